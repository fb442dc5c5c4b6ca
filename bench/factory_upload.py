"""Benchmark: upload N factory-verification units (出厂检定数据, 3 test points each) on SQLite and PostgreSQL,
against the naive way.

    .venv/bin/python bench/factory_upload.py [--n 1000000] [--naive-n 2000] [--backends sqlite,postgresql]
                                             [--pg-url postgresql://postgres@127.0.0.1:5432]

The parent re-executes itself once per backend with ``DATABASE_URL`` pointing at a fresh database (a temp
SQLite file; a throw-away PostgreSQL database created and dropped).  Each worker migrates, registers one
manufacturer with its model and a granted authorization, generates ``--n`` units with
:func:`jiliang.simulation.factory.bulk_units` and encodes them as NDJSON — the body the API receives (not
timed).  Then it times:

* ``fast``: :func:`jiliang.factory.upload.upload_ndjson` from the raw body — the code path of
  ``POST /api/v1/factory/units`` with NDJSON: Polars reads the body into columns, every check runs per
  column, the rule engine judges every point, COPY … CSV / executemany, batch statistics and the logged
  upload receipt, one transaction;
* ``naive``: one unit at a time — ``evaluate`` the points, ``full_clean()`` (with its uniqueness query),
  ``save()`` and a change-log row, each in its own transaction — on ``--naive-n`` units, rate extrapolated.

Figures are units per second.  The acceptance target is ≥ 100,000 units/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


def run_worker(directory: Path, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": database_url, "JILIANG_HOME": str(directory)}
    cmd = [sys.executable, __file__, "--worker", "--n", str(args.n), "--naive-n", str(args.naive_n)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603 (fixed argv)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"worker for {database_url} failed (exit {proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def parent(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="jiliang-bench-factory-") as tmp:
        directory = Path(tmp)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                results[backend] = run_worker(directory, f"sqlite:///{directory / 'bench.sqlite3'}", args)
            elif backend == "postgresql":
                name = f"jiliang_bench_factory_{os.getpid()}"
                parts = urlsplit(args.pg_url)
                url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
                _pg_admin(args.pg_url, f'CREATE DATABASE "{name}"')
                try:
                    results[backend] = run_worker(directory, url, args)
                finally:
                    _pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}"')
            else:
                raise SystemExit(f"unknown backend {backend!r}")
            r = results[backend]
            print(f"{backend}: fast {r['fast_rate']:,.0f} units/s, naive {r['naive_rate']:,.0f} units/s", flush=True)
    print()
    print(f"factory_upload, {args.n:,} units × 3 test points from NDJSON; naive on {args.naive_n:,} units, "
          "extrapolated")
    header = f"{'backend':<11}{'fast s':>8}{'fast /s':>11}{'naive /s':>10}{'naive s for N':>15}{'× naive':>9}"
    print(header)
    print("-" * len(header))
    for backend, r in results.items():
        print(f"{backend:<11}{r['fast_seconds']:>8.2f}{r['fast_rate']:>11,.0f}{r['naive_rate']:>10,.0f}"
              f"{args.n / r['naive_rate']:>15,.0f}{r['fast_rate'] / r['naive_rate']:>9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"n": args.n, "naive_n": args.naive_n, "results": results}, indent=2))


def worker(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jiliang.config.settings")
    import django

    django.setup()
    import orjson
    from django.core.management import call_command
    from django.db import connection, transaction

    from jiliang.accounts.models import SystemPrincipal
    from jiliang.core.changelog import log_change
    from jiliang.engine.rules import evaluate
    from jiliang.factory import services, upload
    from jiliang.factory.models import Authorization, FactoryUnit
    from jiliang.registry.models import InstrumentModel, Organization, OrganizationKind
    from jiliang.simulation.factory import bulk_units, maker_uscc

    actor = SystemPrincipal("system:bench")
    call_command("migrate", interactive=False, verbosity=0)
    org = Organization.objects.create(uscc=maker_uscc("440306", 1), name="基准水表有限公司", region_id="440306")
    OrganizationKind.objects.create(organization=org, kind="manufacturer")
    model = InstrumentModel.objects.create(maker=org, name="LXS-15E", instrument_type_id="water_meter",
                                           accuracy_class="2", params={"Q3_m3h": 2.5, "R": 100, "DN_mm": 15})
    on = dt.date(2025, 1, 6)
    a = services.authorization_apply(actor=actor, manufacturer_id=org.pk, registered_metrologists=3,
                                     conditions={"standards": "x", "environment": "x", "registered_metrologists": "x",
                                                 "management_system": "x"},
                                     scope=[{"instrument_type": "water_meter", "dn_min": 15, "dn_max": 40}], today=on)
    services.authorization_transition(actor=actor, authorization_id=a.pk, event="assess", today=on)
    a = services.authorization_transition(actor=actor, authorization_id=a.pk, event="grant", today=on)
    records = bulk_units(args.n, org.uscc, per_batch=max(5000, args.n // 150))
    body = b"\n".join(orjson.dumps(r) for r in records)
    del records

    t0 = time.perf_counter()
    res = upload.upload_ndjson(actor=actor, body=body, source="bench")
    t2 = time.perf_counter()
    assert res.created == args.n, res
    assert FactoryUnit.objects.count() == args.n
    del body

    # the naive way: one unit at a time, validated, judged, saved and logged in its own transaction
    sample = bulk_units(args.naive_n, org.uscc, prefix="N", seed=99)
    t = time.perf_counter()
    for rec in sample:
        with transaction.atomic():
            result = evaluate({"instrument_type": "water_meter", "accuracy_class": "2",
                               "params": model.params, "points": rec["points"]})
            u = FactoryUnit(upload_id=0, manufacturer=org, authorization=a, model=model, instrument_type="water_meter",
                            name=rec["name"], size_dn=15, serial=rec["serial"], accuracy_class="2",
                            batch=rec["production_date"], production_date=dt.date.fromisoformat(rec["production_date"]),
                            verification_date=dt.date.fromisoformat(rec["verification_date"]),
                            valid_until=dt.date(2031, 1, 1), conforming=result["conforming"],
                            institution=rec["institution"], points=orjson.dumps(rec["points"]).decode())
            u.full_clean()
            u.save()
            log_change(actor=actor, obj=u, action="create")
    naive_seconds = time.perf_counter() - t
    assert Authorization.objects.count() == 1
    print(json.dumps({
        "vendor": connection.vendor, "units": res.created, "fast_seconds": t2 - t0,
        "fast_rate": res.created / (t2 - t0), "naive_units": len(sample),
        "naive_seconds": naive_seconds, "naive_rate": len(sample) / naive_seconds,
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="units uploaded (default 1,000,000)")
    p.add_argument("--naive-n", type=int, default=2_000, help="units saved the naive way (default 2,000)")
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument("--pg-url", default=os.environ.get("JILIANG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
                   help="PostgreSQL server to create the throw-away database on")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
