"""Benchmark: import 100,000 instruments from CSV (批量导入) into SQLite and PostgreSQL, against the naive way.

    .venv/bin/python bench/import_instruments.py [--rows 100000] [--naive-rows 5000]
                                                 [--backends sqlite,postgresql]
                                                 [--pg-url postgresql://postgres@127.0.0.1:5432]

The parent process generates the simulated city's organisations, places and exactly ``--rows``
instruments as the three SPEC 3.5 CSV files, then re-executes itself once per backend with
``DATABASE_URL`` pointing at a fresh database (a temp SQLite file; a throw-away PostgreSQL database that
is created and dropped).  Each worker migrates, imports the organisations and places (not timed as part
of the figure), then times:

* ``fast``: ``read_path(instruments.csv)`` + ``import_instruments`` — the code path of
  ``jiliang import instruments FILE`` (validate every row, COPY / executemany, change log);
* ``naive``: one ORM object at a time, validated and change-logged, each in its own transaction
  (bench/naive_orm.py), on ``--naive-rows`` rows spread over the file, rate extrapolated;
* ``bare``: ``Instrument(...).save()`` per row, no validation, no change log, same sample.

The instrument table is emptied between the runs.  Figures are instruments per second.
"""

from __future__ import annotations

import argparse
import dataclasses
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


# ---------------------------------------------------------------------------------------------- parent

def make_files(directory: Path, rows: int, seed: int) -> dict[str, int]:
    from jiliang.simulation.city import SCALES, generate_city, write_csv_files

    base = SCALES["city"]
    meters = rows - (base.scales + base.chargers + base.nozzles)
    if meters < 2:
        raise SystemExit(f"--rows must be more than {base.scales + base.chargers + base.nozzles}")
    water = meters * 5 // 8
    spec = dataclasses.replace(base, name="bench", water_meters=water, gas_meters=meters - water)
    city = generate_city(spec, seed)
    write_csv_files(city, directory)
    return {"organizations": len(city.organizations), "places": len(city.places),
            "instruments": len(city.instruments)}


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


def run_worker(directory: Path, database_url: str, naive_rows: int) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": database_url, "JILIANG_HOME": str(directory)}
    cmd = [sys.executable, __file__, "--worker", "--dir", str(directory), "--naive-rows", str(naive_rows)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603 (fixed argv)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"worker for {database_url} failed (exit {proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def parent(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="jiliang-bench-import-") as tmp:
        directory = Path(tmp)
        t = time.perf_counter()
        sizes = make_files(directory, args.rows, args.seed)
        print(f"generated {sizes['instruments']:,} instruments, {sizes['places']:,} places, "
              f"{sizes['organizations']:,} organizations as CSV in {time.perf_counter() - t:.1f} s "
              f"({(directory / 'instruments.csv').stat().st_size / 1e6:.1f} MB)", flush=True)
        results: dict[str, dict[str, Any]] = {}
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{directory / 'bench.sqlite3'}"
                results[backend] = run_worker(directory, url, args.naive_rows)
            elif backend == "postgresql":
                name = f"jiliang_bench_{os.getpid()}"
                parts = urlsplit(args.pg_url)
                url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
                _pg_admin(args.pg_url, f'CREATE DATABASE "{name}"')
                try:
                    results[backend] = run_worker(directory, url, args.naive_rows)
                finally:
                    _pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}"')
            else:
                raise SystemExit(f"unknown backend {backend!r}")
            r = results[backend]
            print(f"{backend}: fast {r['fast_rate']:,.0f}/s, naive {r['naive_rate']:,.0f}/s, "
                  f"bare {r['bare_rate']:,.0f}/s", flush=True)
    print()
    print(f"import_instruments, {args.rows:,} instruments from CSV; naive on {args.naive_rows:,} rows, extrapolated")
    header = (f"{'backend':<11}{'fast s':>8}{'fast /s':>10}{'(read':>7}{'import)':>9}"
              f"{'naive /s':>10}{'bare /s':>9}{'× naive':>9}{'× bare':>8}")
    print(header)
    print("-" * len(header))
    for backend, r in results.items():
        print(f"{backend:<11}{r['fast_seconds']:>8.2f}{r['fast_rate']:>10,.0f}{r['read_seconds']:>7.2f}"
              f"{r['import_seconds']:>9.2f}{r['naive_rate']:>10,.0f}{r['bare_rate']:>9,.0f}"
              f"{r['fast_rate'] / r['naive_rate']:>9.0f}{r['fast_rate'] / r['bare_rate']:>8.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": args.rows, "naive_rows": args.naive_rows,
                                               "results": results}, indent=2))


# ---------------------------------------------------------------------------------------------- worker

def _empty_instruments() -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute('DELETE FROM "registry_instrument"')


def worker(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jiliang.config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from jiliang.accounts.models import SystemPrincipal
    from jiliang.registry.importing import import_instruments, import_organizations, import_places
    from jiliang.registry.tabular import read_path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from naive_orm import BareInstrumentSaver, save_instrument

    directory = Path(args.dir)
    actor = SystemPrincipal("system:bench")
    call_command("migrate", interactive=False, verbosity=0)
    t = time.perf_counter()
    import_organizations(table=read_path(directory / "organizations.csv"), actor=actor)
    import_places(table=read_path(directory / "places.csv"), actor=actor)
    setup_seconds = time.perf_counter() - t

    t0 = time.perf_counter()
    table = read_path(directory / "instruments.csv")
    t1 = time.perf_counter()
    result = import_instruments(table=table, actor=actor)
    t2 = time.perf_counter()
    n = result.created

    _empty_instruments()
    stride = max(1, len(table.rows) // args.naive_rows)
    sample = [values for _, values in table.rows[::stride]][: args.naive_rows]
    t = time.perf_counter()
    for row in sample:
        save_instrument(row, actor)
    naive_seconds = time.perf_counter() - t

    _empty_instruments()
    saver = BareInstrumentSaver()
    t = time.perf_counter()
    for row in sample:
        saver.save(row)
    bare_seconds = time.perf_counter() - t

    print(json.dumps({
        "vendor": connection.vendor, "instruments": n, "setup_seconds": setup_seconds,
        "read_seconds": t1 - t0, "import_seconds": t2 - t1, "fast_seconds": t2 - t0, "fast_rate": n / (t2 - t0),
        "naive_rows": len(sample), "naive_seconds": naive_seconds, "naive_rate": len(sample) / naive_seconds,
        "bare_seconds": bare_seconds, "bare_rate": len(sample) / bare_seconds,
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="instruments in the CSV (default 100,000)")
    p.add_argument("--naive-rows", type=int, default=5_000, help="rows saved the naive way (default 5,000)")
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument("--pg-url", default=os.environ.get("JILIANG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
                   help="PostgreSQL server to create the throw-away database on")
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
