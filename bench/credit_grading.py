"""Benchmark: grade 1,000,000 market entities from 20,000,000 credit events (计量信用评定) and draw an inspection
plan over them (双随机), against the naive per-entity ORM loop.

    .venv/bin/python bench/credit_grading.py [--entities 1000000] [--events 20000000]
                                             [--backends postgresql,sqlite]
                                             [--sqlite-entities 100000] [--sqlite-events 2000000]
                                             [--naive 2000] [--pg-url postgresql://postgres@127.0.0.1:5432]

The parent re-executes itself once per backend with ``DATABASE_URL`` pointing at a fresh database (a
throw-away PostgreSQL database that is created and dropped; a temp SQLite file).  The worker migrates, then
generates the organisations (each a ``market_entity``) and the events with NumPy and loads them with COPY
(PostgreSQL; foreign-key triggers off and the event indexes built after the load) or ``executemany``
(SQLite) -- setup, not part of the figure.  Then it times:

* ``regrade (first)``: ``credit_regrade`` -- the platform's code path (``jiliang credit regrade``, the
  worker's nightly job): events and grades read column-wise, scored by the vectorised engine, every grade
  new (written in bulk, change-logged as import entries), the run recorded;
* ``regrade (next day)``: the same a day later: every score has decayed, so changed rows are rewritten
  and changes of letter logged one by one;
* ``read events``: ``grading.load_events`` alone (part of both figures above);
* ``frame`` + ``draw``: the frame (credit code and grade of every graded entity) read from the grades, and
  ``jiliang.engine.draw`` commit + draw with the configured shares per grade;
* ``naive``: per entity, its events through the ORM, scored by the engine, its grade read, saved and
  change-logged through the ORM -- on ``--naive`` entities spread over the population, extrapolated; the
  naive scores are also checked against the columnar ones.
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

TODAY = dt.date(2026, 11, 23)


# ---------------------------------------------------------------------------------------------- parent

def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


def run_worker(database_url: str, args: argparse.Namespace, entities: int, events: int) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": database_url}
    cmd = [sys.executable, __file__, "--worker", "--entities", str(entities), "--events", str(events),
           "--naive", str(args.naive), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603 (fixed argv)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        raise SystemExit(f"worker for {database_url} failed (exit {proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def parent(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, Any]] = {}
    for backend in args.backends.split(","):
        if backend == "postgresql":
            name = f"jiliang_bench_credit_{os.getpid()}"
            parts = urlsplit(args.pg_url)
            url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
            _pg_admin(args.pg_url, f'CREATE DATABASE "{name}"')
            try:
                results[backend] = run_worker(url, args, args.entities, args.events)
            finally:
                _pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}"')
        elif backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="jiliang-bench-credit-") as tmp:
                results[backend] = run_worker(f"sqlite:///{tmp}/bench.sqlite3", args, args.sqlite_entities,
                                              args.sqlite_events)
        else:
            raise SystemExit(f"unknown backend {backend!r}")
    print()
    print("credit_grading: regrade = credit_regrade (columnar); naive = per-entity ORM loop, extrapolated")
    header = (f"{'backend':<11}{'entities':>10}{'events':>12}{'load s':>8}{'regrade1 s':>11}{'regrade2 s':>11}"
              f"{'(read ev)':>10}{'frame s':>9}{'draw s':>8}{'naive s':>10}{'× naive':>9}")
    print(header)
    print("-" * len(header))
    for backend, r in results.items():
        print(f"{backend:<11}{r['entities']:>10,}{r['events']:>12,}{r['setup_s']:>8.0f}{r['regrade_first_s']:>11.2f}"
              f"{r['regrade_next_s']:>11.2f}{r['read_events_s']:>10.2f}{r['frame_s']:>9.2f}{r['draw_s']:>8.2f}"
              f"{r['naive_extrapolated_s']:>10.0f}{r['naive_extrapolated_s'] / r['regrade_next_s']:>9.0f}")
    for backend, r in results.items():
        print(f"{backend}: first regrade by grade {r['by_grade_first']}, next day {r['updated_next']:,} rows "
              f"rewritten, {r['changed_next']:,} letters changed; drew {r['drawn']:,} of {r['entities']:,}; "
              f"naive {r['naive_rate']:.0f} entities/s on {r['naive']:,}, max |naive - columnar| score "
              f"{r['naive_max_diff']:.2e}; peak RSS {r['peak_rss_mb']:,.0f} MB")


# ---------------------------------------------------------------------------------------------- worker

def _setup(n: int, m: int, seed: int) -> None:
    """Organisations 1..n (market entities in Futian) and m events, loaded in bulk."""
    import numpy as np
    from django.db import connection, transaction
    from django.utils import timezone

    from jiliang.core.bulk import bump_sequence, is_postgres
    from jiliang.engine.credit import DEFAULT_EVENTS
    from jiliang.registry.models import Organization, OrganizationKind
    from jiliang.supervision.models import CreditEvent

    rng = np.random.default_rng(seed)
    kinds = list(DEFAULT_EVENTS)
    # more good news than bad, as in a real city
    p = np.array([30, 4, 3, 3, 1, 3, 5, 1, 6], dtype=np.float64)
    now = timezone.now().isoformat()
    ent = rng.integers(1, n + 1, m)
    code = rng.choice(len(kinds), size=m, p=p / p.sum())
    age = rng.integers(0, 1500, m)
    day0 = TODAY.toordinal()
    pg = is_postgres()
    step = 1_000_000
    with transaction.atomic(), connection.cursor() as cur:
        if pg:
            cur.execute("SET LOCAL session_replication_role = replica")  # no FK triggers while loading
            cur.execute('ALTER TABLE "supervision_creditevent" DROP CONSTRAINT "credit_event_once"')
            cur.execute('DROP INDEX "credit_event_entity_idx"')
        orgs = [(i, now, now, f"91440304{i:010d}", f"商户{i}", "440304", "", "") for i in range(1, n + 1)]
        org_kinds = [(i, i, "market_entity") for i in range(1, n + 1)]
        _load(cur, Organization, ["id", "created_at", "updated_at", "uscc", "name", "region_id", "address",
                                  "contact_phone"], orgs, pg)
        _load(cur, OrganizationKind, ["id", "organization_id", "kind"], org_kinds, pg)
        del orgs, org_kinds
        for k in range(0, m, step):
            e, c, a = ent[k:k + step].tolist(), code[k:k + step].tolist(), age[k:k + step].tolist()
            rows = [(k + i + 1, e[i], kinds[c[i]], dt.date.fromordinal(day0 - a[i]).isoformat(), f"b:{k + i + 1}",
                     "", now) for i in range(len(e))]
            _load(cur, CreditEvent, ["id", "entity_id", "kind", "occurred_on", "source", "note", "recorded_at"],
                  rows, pg)
        if pg:
            cur.execute('ALTER TABLE "supervision_creditevent" ADD CONSTRAINT "credit_event_once" '
                        'UNIQUE ("entity_id", "kind", "source")')
            cur.execute('CREATE INDEX "credit_event_entity_idx" ON "supervision_creditevent" '
                        '("entity_id", "occurred_on")')
            for model in (Organization, OrganizationKind, CreditEvent):
                t = model._meta.db_table
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT MAX(id) FROM \"{t}\"))")
        else:
            for model in (Organization, OrganizationKind, CreditEvent):
                bump_sequence(model)
    with connection.cursor() as cur:
        if pg:
            cur.execute("VACUUM ANALYZE")
        else:
            cur.execute("ANALYZE")


def _load(cur: Any, model: Any, columns: list[str], rows: list[tuple[Any, ...]], pg: bool) -> None:
    table = model._meta.db_table
    cols = ", ".join(f'"{c}"' for c in columns)
    if pg:
        with cur.cursor.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
            for k in range(0, len(rows), 50_000):
                copy.write("".join("\t".join(str(v) for v in r) + "\n" for r in rows[k:k + 50_000]))
    else:
        marks = ", ".join(["%s"] * len(columns))
        cur.executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', rows)


def _naive(sample: list[int], today: dt.date) -> tuple[float, dict[int, float]]:
    """The naive way: per entity, events through the ORM, the engine's score, the grade saved and logged."""
    from django.db import transaction
    from django.utils import timezone

    from jiliang.accounts.models import SystemPrincipal
    from jiliang.core.changelog import log_change, snapshot
    from jiliang.supervision.models import CreditGrade
    from jiliang.supervision.services import credit_entity_score, current_credit_config

    actor = SystemPrincipal("bench:naive")
    out: dict[int, float] = {}
    t = time.perf_counter()
    with transaction.atomic():
        version, cfg = current_credit_config()
        for pk in sample:
            s, g, n = credit_entity_score(pk, today=today, config=cfg)
            row = CreditGrade.objects.filter(entity_id=pk).first()
            if row is None:
                row = CreditGrade.objects.create(entity_id=pk, score=s, grade=g, events=n, computed_at=timezone.now(),
                                                 config_version=version)
                log_change(actor=actor, obj=row, action="create")
            else:
                before = snapshot(row)
                row.score, row.grade, row.events, row.computed_at = s, g, n, timezone.now()
                row.save(update_fields=["score", "grade", "events", "computed_at"])
                if before["grade"] != g:
                    log_change(actor=actor, obj=row, action="update", before=before)
            out[pk] = s
        elapsed = time.perf_counter() - t
        transaction.set_rollback(True)  # leave the columnar grades in place
    return elapsed, out


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jiliang.config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from jiliang.accounts.models import SystemPrincipal
    from jiliang.engine import draw
    from jiliang.supervision import grading
    from jiliang.supervision.models import CreditGrade
    from jiliang.supervision.services import credit_regrade, current_credit_config

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    n, m = args.entities, args.events
    call_command("migrate", verbosity=0)
    t = time.perf_counter()
    _setup(n, m, args.seed)
    setup_s = time.perf_counter() - t
    log(f"setup: {n:,} entities, {m:,} events loaded in {setup_s:.0f} s")
    actor = SystemPrincipal("bench")
    version, cfg = current_credit_config()

    t = time.perf_counter()
    with transaction.atomic():
        ev = grading.load_events(today=TODAY, kinds=cfg.event_names)
    read_s = time.perf_counter() - t
    assert len(ev) == m, (len(ev), m)
    del ev
    log(f"read events: {read_s:.2f} s")

    t = time.perf_counter()
    first = credit_regrade(actor=actor, today=TODAY)
    first_s = time.perf_counter() - t
    log(f"regrade (first): {first_s:.2f} s {first}")
    t = time.perf_counter()
    nxt = credit_regrade(actor=actor, today=TODAY + dt.timedelta(days=1))
    next_s = time.perf_counter() - t
    log(f"regrade (next day): {next_s:.2f} s {nxt}")

    t = time.perf_counter()
    frame = [{"id": u, "grade": g, "weight": 1.0}
             for u, g in CreditGrade.objects.values_list("entity__uscc", "grade").iterator(chunk_size=50_000)]
    frame_s = time.perf_counter() - t
    t = time.perf_counter()
    secret = bytes(range(32))
    draw.commit(frame=frame, shares=cfg.shares, secret=secret)
    result = draw.draw(frame=frame, shares=cfg.shares, secret=secret, beacon="bench-beacon")
    draw_s = time.perf_counter() - t
    log(f"frame {frame_s:.2f} s, commit + draw {draw_s:.2f} s, {len(result.selected):,} drawn")
    del frame

    step = max(1, n // args.naive)
    sample = list(range(1, n + 1, step))[: args.naive]
    naive_s, naive_scores = _naive(sample, TODAY + dt.timedelta(days=1))
    stored = dict(CreditGrade.objects.filter(entity_id__in=sample).values_list("entity_id", "score")) \
        if len(sample) <= 900 else {e: s for e, s in CreditGrade.objects.values_list("entity_id", "score")
                                    if e in naive_scores}
    diff = max(abs(stored[k] - v) for k, v in naive_scores.items())
    log(f"naive: {len(sample):,} entities in {naive_s:.2f} s, max diff {diff:.2e}")
    print(json.dumps({
        "entities": n, "events": m, "setup_s": setup_s, "read_events_s": read_s, "regrade_first_s": first_s,
        "regrade_next_s": next_s, "by_grade_first": first.by_grade, "updated_next": nxt.updated,
        "changed_next": nxt.changed, "frame_s": frame_s, "draw_s": draw_s, "drawn": len(result.selected),
        "naive": len(sample), "naive_s": naive_s, "naive_rate": len(sample) / naive_s,
        "naive_extrapolated_s": naive_s * n / len(sample), "naive_max_diff": diff, "peak_rss_mb": _rss_mb(),
        "config_version": version}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--sqlite-entities", type=int, default=100_000)
    ap.add_argument("--sqlite-events", type=int, default=2_000_000)
    ap.add_argument("--naive", type=int, default=2000, help="entities in the naive sample")
    ap.add_argument("--backends", default="postgresql,sqlite")
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
