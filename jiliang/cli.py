"""The ``jiliang`` command (SPEC 3.1).  Every command migrates an empty or older database first, exits
non-zero with a one-line reason on bad input, and explains itself with ``--help``."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
FUEL_ALERTS_EVERY_S = 3600.0  # the worker refits the tank balances (fuel alerts) at most this often


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jiliang.config.settings")
    import django

    django.setup()


def ensure_migrated(verbose: bool = False) -> None:
    """Apply pending migrations (a fresh or older database) before a command touches it."""
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        if verbose:
            print(f"正在初始化数据库 / migrating the database ({len(plan)} steps)…", file=sys.stderr)
        call_command("migrate", interactive=False, verbosity=0)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"jiliang: error: {message}", file=sys.stderr)
    return code


# ------------------------------------------------------------------------------------------------- commands

def cmd_import(args: argparse.Namespace) -> int:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.config.importers import importers
    from jiliang.core.errors import JiliangError
    from jiliang.registry import importing
    from jiliang.registry.tabular import read_path

    path = Path(args.file)
    try:
        table = read_path(path)
        bar = _progress(len(table.rows), f"validating {args.kind}") if len(table.rows) > 20000 else None
        kwargs: dict[str, Any] = {}
        if bar is not None and args.kind == "instruments":
            kwargs["progress"] = lambda n: bar.update(n - bar.n)
        importer = importers()[args.kind]
        result = importer(table=table, actor=SystemPrincipal(), skip_invalid=args.skip_invalid, **kwargs)
        if bar is not None:
            bar.close()
    except JiliangError as exc:
        print(f"jiliang: error: {exc.message}", file=sys.stderr)
        for p in exc.details[:1000]:
            print(f"  {p}", file=sys.stderr)
        if len(exc.details) > 1000:
            print(f"  … and {len(exc.details) - 1000} more", file=sys.stderr)
        return 1
    print(f"{args.kind}: {result.created} imported, {len(result.rejected)} rejected")
    if result.rejected:
        out = Path(args.rejected) if args.rejected else path.with_name(path.stem + ".rejected.csv")
        rows = importing.rejected_as_rows(result)
        cols = list(dict.fromkeys(["row", "errors", *(k for r in rows for k in r)]))
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        print(f"rejected rows with their reasons written to {out}")
        for p in result.problems[:20]:
            print(f"  {p}", file=sys.stderr)
    return 0


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="row", file=sys.stderr, disable=not sys.stderr.isatty())


def cmd_serve(args: argparse.Namespace) -> int:
    serve(args.host, args.port)
    return 0


def serve(host: str, port: int) -> None:
    from waitress import serve as waitress_serve

    from jiliang.config.wsgi import application

    print(f"Jiliang 计量监管平台 serving at http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    waitress_serve(application, host=host, port=port, threads=8, ident="jiliang")


def cmd_demo(args: argparse.Namespace) -> int:
    from jiliang.simulation.demo import build_demo

    summary = build_demo(scale=args.scale, seed=args.seed, fresh=not args.keep)
    print(summary.describe(host=args.host, port=args.port))
    if args.no_serve:
        return 0
    serve(args.host, args.port)
    return 0


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file")
    return path.read_bytes()


def cmd_evaluate(args: argparse.Namespace) -> int:
    import orjson

    from jiliang.engine.rules import RuleError, evaluate, load_tables

    try:
        raw = _read_input(args.file)
        request = orjson.loads(raw)
        result = evaluate(request, load_tables())
    except FileNotFoundError as exc:
        return _fail(str(exc))
    except orjson.JSONDecodeError as exc:
        return _fail(f"the input is not valid JSON: {exc}")
    except RuleError as exc:
        return _fail(str(exc))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2 if args.pretty else 0).decode() + "\n")
    return 0


def cmd_sampling_plan(args: argparse.Namespace) -> int:
    import orjson

    from jiliang.engine.sampling import SamplingError, plan

    if args.lot_size < 2:
        return _fail("--lot-size must be at least 2")
    try:
        p = plan(lot_size=args.lot_size, aql=args.aql, level=args.level)
    except SamplingError as exc:
        return _fail(str(exc))
    sys.stdout.write(orjson.dumps(p.as_dict()).decode() + "\n")
    return 0


def cmd_draw_verify(args: argparse.Namespace) -> int:
    """Check a published draw bundle: offline from a file (no database, no settings), or by plan id from
    this platform's database."""
    import orjson

    from jiliang.engine.draw import verify

    if args.bundle != "-" and not Path(args.bundle).exists() and args.bundle.isdigit():
        _setup()
        ensure_migrated()
        from jiliang.core.errors import JiliangError
        from jiliang.supervision.models import InspectionPlan
        from jiliang.supervision.services import plan_bundle

        plan = InspectionPlan.objects.filter(pk=int(args.bundle)).first()
        if plan is None:
            return _fail(f"no plan {args.bundle}")
        try:
            doc = plan_bundle(plan)
        except JiliangError as exc:
            return _fail(exc.message)
        result = verify(doc)
        print(f"{doc['plan']}: " + ("verified" if result.ok else "NOT verified: " + "; ".join(result.problems)))
        return 0 if result.ok else 1
    try:
        doc = orjson.loads(_read_input(args.bundle))
    except FileNotFoundError as exc:
        return _fail(str(exc))
    except orjson.JSONDecodeError as exc:
        return _fail(f"the bundle is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return _fail("the bundle must be a JSON object")
    result = verify(doc)
    plan = doc.get("plan") or args.bundle
    if result.ok:
        print(f"{plan}: verified — {len(doc['selected'])} targets reproduced from the published frame, "
              f"secret and beacon; the commitment matches")
        return 0
    print(f"{plan}: NOT verified")
    for p in result.problems:
        print(f"  - {p}")
    return 1


def cmd_token(args: argparse.Namespace) -> int:
    """Create, list or revoke an organisation's API tokens from the server's command line."""
    from jiliang.accounts.models import ApiToken, SystemPrincipal
    from jiliang.accounts.services import api_token_create, api_token_revoke
    from jiliang.core.errors import JiliangError
    from jiliang.registry.models import Organization

    actor = SystemPrincipal()
    try:
        if args.action == "create":
            org = Organization.objects.filter(uscc=args.org).first()
            if org is None:
                return _fail(f"no organization with credit code {args.org} is registered")
            tok, raw = api_token_create(actor=actor, name=args.name, organization_id=org.pk, role=args.role,
                                        region_code=args.region)
            print(f"token {tok.pk} for {org.name} ({args.role}); shown once, store it now:")
            print(raw)
            return 0
        if args.action == "revoke":
            tok = api_token_revoke(actor=actor, token_id=args.id)
            print(f"token {tok.pk} ({tok.name}) revoked")
            return 0
        qs = ApiToken.objects.select_related("organization").order_by("id")
        if args.org:
            qs = qs.filter(organization__uscc=args.org)
        for t in qs:
            state = "revoked" if t.revoked_at else "active"
            print(f"{t.pk}\t{t.prefix}…\t{t.organization.uscc}\t{t.role}\t{state}\t{t.name}")
        return 0
    except JiliangError as exc:
        return _fail(exc.message)


def _ndjson_lines(name: str) -> Any:
    """Lines of a file or stdin; gzip is recognised by its magic bytes, whatever the name."""
    import gzip
    import io

    stream: Any = sys.stdin.buffer if name == "-" else Path(name).open("rb")  # noqa: SIM115 (closed by caller)
    head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
    if name != "-" and not head:
        head = Path(name).read_bytes()[:2]
    if head == b"\x1f\x8b":
        return gzip.open(stream if name == "-" else Path(name), "rb")
    return stream if name == "-" else io.BufferedReader(stream)


def cmd_ingest(args: argparse.Namespace) -> int:
    from jiliang.monitoring.ingest import ingest_lines

    if args.file != "-" and not Path(args.file).exists():
        return _fail(f"{args.file}: no such file")
    try:
        source = "stdin" if args.file == "-" else Path(args.file).name
        with _ndjson_lines(args.file) as lines:
            report = ingest_lines(lines, source=f"cli:{source}")
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    print(f"{report.lines} lines: {report.accepted} accepted, {report.duplicates} duplicates (already stored), "
          f"{report.rejected} rejected")
    for line, fieldname, reason in report.rejections[:50]:
        where = f"line {line}" + (f", field {fieldname}" if fieldname else "")
        print(f"  {where}: {reason}", file=sys.stderr)
    if report.rejected > 50:
        print(f"  … {report.rejected - 50} more rejected lines are in the quarantine table", file=sys.stderr)
    return 0


JOB_LEASE_S = 3600.0  # a scheduled job's claim lasts this long; a worker that died holding it is taken over


def _run_once(name: str, period: str, job: Any) -> bool:
    """Run ``job`` if this worker wins ``name`` for ``period`` (a lease shared by every worker).  True when the
    period is done — by this worker or another; False while another worker holds it (asked again next
    time: if that worker dies, its lease runs out and this one takes the job over)."""
    import os
    import socket

    from jiliang.core.services import job_claim, job_done, job_release

    holder = f"{socket.gethostname()}:{os.getpid()}"
    claim = job_claim(name=name, period=period, holder=holder, lease_s=JOB_LEASE_S)
    if claim != "run":
        return claim == "done"
    try:
        job()
    except BaseException:
        job_release(name=name, period=period, holder=holder)
        raise
    job_done(name=name, period=period, holder=holder)
    return True


def _fuel_job() -> None:
    """The tank balances refit their whole window (fuel alerts), at most once per ``FUEL_ALERTS_EVERY_S``."""
    from jiliang.monitoring.fuel import fuel_alerts_run

    fuel = fuel_alerts_run()
    print(f"fuel alerts: {fuel.tanks} tanks, {fuel.opened} opened, {fuel.updated} updated", flush=True)


def _nightly_jobs() -> None:
    """The nightly jobs: regrade the whole city's credit, due-date reminders, overdue cases, retention."""
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.supervision.services import credit_regrade

    report = credit_regrade(actor=SystemPrincipal("system:worker"))
    print(f"credit regraded: {report.entities} entities, {report.changed} changed", flush=True)
    from jiliang.verification.services import reminders_send

    rem = reminders_send()
    print(f"reminders: {rem.due_soon} due soon, {rem.overdue} overdue, {rem.emails} e-mails", flush=True)
    from jiliang.supervision.services import case_escalate_overdue

    esc = case_escalate_overdue(actor=SystemPrincipal("system:worker"))
    print(f"cases: {esc.reminded} rectification due, {esc.escalated} escalated", flush=True)
    from jiliang.monitoring.partitions import prune_expired

    pruned = prune_expired()
    if pruned is not None:
        print(f"retention: {sum(pruned.deleted.values())} records before {pruned.before.date()} removed, "
              f"{sum(pruned.kept.values())} kept as evidence", flush=True)


def cmd_worker(args: argparse.Namespace) -> int:
    """MQTT ingestion and the periodic detector run, until interrupted (SIGINT/SIGTERM)."""
    import signal
    import threading

    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.mqtt import MqttIngestor

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def on_batch(report: Any) -> None:
        print(f"batch stored: {report.accepted} accepted, {report.duplicates} duplicates, "
              f"{report.rejected} rejected", flush=True)

    regraded_on: list[Any] = [None]
    fuel_at: list[str | None] = [None]

    link = None
    consume_of: list[int] | None = None
    if args.stream:
        from jiliang.monitoring.stream import JetStreamLink, StreamError, stream_prefix

        try:
            link = JetStreamLink(args.stream, partitions=args.partitions, stream=args.stream_name,
                                 prefix=stream_prefix(args.stream_name))
            consume_of = _partition_list(args.consume, args.partitions)
        except (StreamError, ValueError) as exc:
            if link is not None:
                link.close()
            return _fail(str(exc))
        print(f"stream: {args.stream} stream {link.stream}, {args.partitions} partitions, consuming "
              f"{'all' if args.consume is None else args.consume}", flush=True)

    def detect() -> None:
        if link is not None:  # the stream feed (ADR 0003): publish what is committed, analyse what is there
            from jiliang.monitoring.stream import consume, publish_pending

            pub = publish_pending(link)
            got = consume(link, partitions=consume_of)
            if pub.rows or got.rows:
                print(f"stream: {pub.rows} records published in {pub.messages} messages; {got.rows} records "
                      f"analysed from {got.messages} messages, {got.opened} alerts opened", flush=True)
        else:
            r = run_detectors()
            opened = sum(d.opened for d in r.detectors)
            if r.rows:
                print(f"detectors: {r.rows} records analysed, {opened} alerts opened", flush=True)
        import datetime as dt
        import time

        from django.utils import timezone

        # scheduled jobs: once per period across all workers (a lease in the database, jiliang.core.services)
        start = dt.datetime.fromtimestamp(time.time() // FUEL_ALERTS_EVERY_S * FUEL_ALERTS_EVERY_S, dt.UTC)
        hour = start.isoformat(timespec="minutes")  # the period's start: ISO strings sort in time order
        if fuel_at[0] != hour and _run_once("fuel-alerts", hour, _fuel_job):
            fuel_at[0] = hour
        today = timezone.localdate()
        if regraded_on[0] != today and _run_once("nightly", today.isoformat(), _nightly_jobs):
            regraded_on[0] = today

    try:
        if args.no_mqtt:  # a detector worker only: the stream (or the database) is its input
            print(f"jiliang worker: no MQTT; detectors every {args.detect_every:g} s", flush=True)
            print("ready", flush=True)
            while not stop.is_set():
                detect()
                stop.wait(args.detect_every)
            print("stopped", flush=True)
            return 0
        ingestor = MqttIngestor(host=args.mqtt_host, port=args.mqtt_port, topic=args.topic,
                                client_id=args.client_id, batch_size=args.batch_size, on_batch=on_batch)
        print(f"jiliang worker: MQTT {args.mqtt_host}:{args.mqtt_port} topic {args.topic} (client {args.client_id}); "
              f"detectors every {args.detect_every:g} s", flush=True)
        try:
            stats = ingestor.run(stop, every=detect, every_s=args.detect_every,
                                 on_ready=lambda: print("subscribed", flush=True))
        except OSError as exc:
            return _fail(f"cannot reach the MQTT broker at {args.mqtt_host}:{args.mqtt_port}: {exc}")
        detect()
        print(f"stopped: {stats.messages} messages, {stats.accepted} records stored, {stats.duplicates} duplicates, "
              f"{stats.rejected} rejected", flush=True)
        return 0
    finally:
        if link is not None:
            link.close()


def _partition_list(text: str | None, partitions: int) -> list[int] | None:
    """``--consume`` as partition numbers: "0,2,5-7" (None: all)."""
    if text is None:
        return None
    out: list[int] = []
    for item in text.split(","):
        lo, dash, hi = item.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"--consume: {item!r} is not a partition number or range (e.g. 0,2,5-7)")
        first, last = int(lo), int(hi or lo)
        if first > last or last >= partitions:
            raise ValueError(f"--consume: {item!r} is outside the stream's partitions 0-{partitions - 1}")
        out.extend(range(first, last + 1))
    return sorted(set(out))


def cmd_stream_status(args: argparse.Namespace) -> int:
    import dataclasses

    import orjson

    from jiliang.monitoring.stream import JetStreamLink, StreamError, stream_prefix, stream_status

    try:
        link = JetStreamLink(args.stream, partitions=args.partitions, stream=args.stream_name,
                             prefix=stream_prefix(args.stream_name), create=False)
    except StreamError as exc:
        return _fail(str(exc))
    try:
        status = stream_status(link)
    finally:
        link.close()
    if args.format == "json":
        data = dataclasses.asdict(status)
        for row, part in zip(data["partitions"], status.partitions, strict=True):
            row["state"] = part.state
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
        return 0
    print(f"stream {status.stream}: {status.messages:,} messages, {status.bytes / 1e6:,.1f} MB, oldest "
          f"{status.oldest or '-'}; published up to " + (", ".join(f"{k} {v:,}" for k, v in status.published.items())
                                                         or "nothing yet"))
    print("partition\tstate\twaiting\tin analysis\tredelivered\tbehind (record ids)")
    for p in status.partitions:
        behind = ", ".join(f"{k} {v:,}" for k, v in p.behind.items() if v) or "-"
        print(f"{p.partition}\t{p.state}\t{'-' if p.pending is None else p.pending}\t"
              f"{'-' if p.ack_pending is None else p.ack_pending}\t{'-' if p.redelivered is None else p.redelivered}"
              f"\t{behind}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from jiliang.core.errors import JiliangError
    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.fuel import fuel_alerts_run

    report = run_detectors()
    for d in report.detectors:
        print(f"{d.key}: {d.rows} records analysed, {d.findings} findings, {d.opened} alerts opened, "
              f"{d.updated} updated")
    print(f"{report.rows} records analysed in all")
    try:
        fuel = fuel_alerts_run()
    except JiliangError as exc:
        return _fail(f"fuel alerts: {exc.message}")
    for key, n in fuel.findings.items():
        print(f"{key}: {fuel.tanks} tanks and {fuel.nozzles} nozzles fitted, {n} findings")
    print(f"fuel alerts: {fuel.opened} opened, {fuel.updated} updated, {fuel.unchanged} unchanged, "
          f"{fuel.suppressed} already decided")
    return 0


def cmd_telemetry_prune(args: argparse.Namespace) -> int:
    import datetime as dt
    import zoneinfo

    from jiliang.monitoring.partitions import prune

    if args.before is None:
        from jiliang.monitoring.partitions import retention_cutoff

        cutoff = retention_cutoff()
        if cutoff is None:
            print("retention is off (JILIANG_TELEMETRY_RETENTION_DAYS=0): nothing removed; give --before to prune")
            return 0
        before = cutoff
    else:
        try:
            day = dt.date.fromisoformat(args.before)
        except ValueError:
            return _fail(f"--before {args.before!r}: not a date (YYYY-MM-DD)")
        before = dt.datetime.combine(day, dt.time(0), tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))
    print(f"records before {before.date().isoformat()} (Asia/Shanghai)")
    report = prune(before=before, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for table, n in report.deleted.items():
        if n or report.kept.get(table):
            print(f"{table}: {verb} {n}, kept {report.kept.get(table, 0)} (evidence of alerts under follow-up)")
    for name in report.dropped_partitions:
        print(f"dropped partition {name}")
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    import orjson

    from jiliang.monitoring.detection import alerts_as_json
    from jiliang.monitoring.models import Alert

    qs = Alert.objects.order_by("id")
    if args.status:
        qs = qs.filter(status=args.status)
    data = alerts_as_json(qs)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
    else:
        for a in data:
            print(f"{a['id']}\t{a['opened_at'][:16]}\t{a['severity']}\t{a['status']}\t{a['detector']}\t{a['device']}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    import orjson

    from jiliang.monitoring.estimates import charger_estimates
    from jiliang.monitoring.fuel import dispenser_estimates

    data = charger_estimates() if args.what == "chargers" else dispenser_estimates()
    if args.format == "json":
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
    else:
        for r in data:
            flag = "EXCEEDS MPE" if r["exceeds_mpe"] else ""
            err = "n/a" if r["error_pct"] is None else f"{r['error_pct']:+.2f} % ± {r['ci95_pct'] or 0:.2f}"
            if args.what == "dispensers":  # nozzle: its tank, the tank's leak rate, drift and leak alarms
                leak = "n/a" if r["leak_l_per_h"] is None else f"{r['leak_l_per_h']:+.2f} ± {r['leak_ci95']:.2f} L/h"
                flag = " ".join(f for f, on in ((flag, flag), ("DRIFT", r["drift_flagged"]),
                                                ("TANK LEAK", r["leak_detected"])) if on)
                print(f"{r['device']}\t{r['place']}/{r['tank']}\t{err}\t{r['sessions']} sales\ttank {leak}\t{flag}")
                continue
            print(f"{r['device']}\t{err}\t{r['sessions']} sessions\t{flag}")
    return 0


def cmd_credit(args: argparse.Namespace) -> int:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.supervision.services import credit_regrade

    r = credit_regrade(actor=SystemPrincipal())
    grades = ", ".join(f"{k} {v}" for k, v in r.by_grade.items())
    print(f"{r.entities} entities graded ({grades}); {r.changed} grades changed")
    return 0


def cmd_reminders(args: argparse.Namespace) -> int:
    import datetime as dt

    from jiliang.verification.services import reminders_send

    try:
        as_of = dt.date.fromisoformat(args.as_of) if args.as_of else None
    except ValueError:
        print(f"jiliang reminders: --as-of {args.as_of!r} is not a date (use YYYY-MM-DD)", file=sys.stderr)
        return 2
    r = reminders_send(as_of=as_of, within_days=args.within_days)
    print(f"reminders: {r.due_soon} instruments due soon, {r.overdue} overdue, for {r.organizations} organisations; "
          f"{r.notifications} in-app messages, {r.emails} e-mails")
    return 0


def cmd_cases_escalate(args: argparse.Namespace) -> int:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.supervision.services import case_escalate_overdue

    r = case_escalate_overdue(actor=SystemPrincipal())
    print(f"cases: {r.reminded} rectification due, {r.escalated} escalated")
    return 0


def cmd_createsuperuser(args: argparse.Namespace) -> int:
    from django.core.management import call_command

    call_command("createsuperuser")
    return 0


# ------------------------------------------------------------------------------------------------ the parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jiliang",
        description="Jiliang 计量 — smart supervision platform for legally controlled measuring instruments. "
        "The database is the embedded SQLite file unless DATABASE_URL (sqlite:///ABS/PATH or postgresql://…) "
        "says otherwise; every command migrates it first.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="build a simulated city in the database, then serve the UI",
                       description="Build a seeded simulated city (regions, markets, stations, meters, users for "
                       "every role) into the database, print the URL and the demo logins, and serve the UI.")
    d.add_argument("--scale", choices=["small", "city", "large"], default="small",
                   help="small (tests, seconds), city (the issue's full city), large (×3)")
    d.add_argument("--seed", type=int, default=20261123, help="random seed (the city is deterministic)")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--no-serve", action="store_true", help="build only, do not start the web server")
    d.add_argument("--keep", action="store_true", help="keep existing data (default: start from an empty database)")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="serve the web UI and the API", description="Serve the web UI and /api/.")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_serve)

    i = sub.add_parser("import", help="bulk import a registry file (CSV, XLSX or JSON)",
                       description="Import organizations, places, instruments or verifications (columns of SPEC "
                       "3.5). Every row is "
                       "validated first; any bad row refuses the whole file (exit 1, every problem listed) unless "
                       "--skip-invalid is given, which imports the good rows and writes the rejected ones to a file.")
    i.add_argument("kind", choices=["organizations", "places", "instruments", "verifications"])
    i.add_argument("file", help=".csv (UTF-8, header row), .xlsx (first sheet) or .json (array of objects)")
    i.add_argument("--skip-invalid", action="store_true", help="import the good rows, save the rejected ones")
    i.add_argument("--rejected", help="where to save rejected rows (default FILE.rejected.csv)")
    i.set_defaults(func=cmd_import)

    ing = sub.add_parser("ingest", help="store telemetry records (NDJSON, SPEC 3.2); prints accepted/rejected",
                         description="Validate and store NDJSON telemetry, one record a line (gzip accepted). A bad "
                         "line is rejected with its line number, field and reason and kept in the quarantine table; "
                         "good lines are stored; a repeated (device, seq) is ignored. Exit 0 when the file was "
                         "processed (even with rejected lines), 2 when it cannot be read.")
    ing.add_argument("file", help="an NDJSON file (.ndjson or .gz), or - for standard input")
    ing.set_defaults(func=cmd_ingest)

    wk = sub.add_parser("worker", help="stream consumers and scheduled jobs (MQTT ingestion, detectors)",
                        description="Subscribe to telemetry on MQTT (topic jiliang/v1/<kind>/<device>, QoS 1, "
                        "acknowledged only after the records are stored) and run the detectors periodically, "
                        "until interrupted. With --stream the stored records go through the partitioned NATS "
                        "JetStream stream to the detectors, which any number of workers can share.")
    wk.add_argument("--mqtt-host", default="127.0.0.1")
    wk.add_argument("--mqtt-port", type=int, default=1883)
    wk.add_argument("--topic", default="jiliang/v1/#", help="subscription filter (default jiliang/v1/#)")
    wk.add_argument("--client-id", default="jiliang-worker", help="stable id: the broker keeps its session")
    wk.add_argument("--batch-size", type=int, default=5000)
    wk.add_argument("--detect-every", type=float, default=60.0, help="seconds between detector runs")
    wk.add_argument("--stream", metavar="URL", default=os.environ.get("JILIANG_NATS_URL") or None,
                    help="NATS JetStream server (e.g. nats://127.0.0.1:4222; default $JILIANG_NATS_URL): publish "
                    "stored records to the partitioned stream and run the detectors from it, so that several "
                    "workers share the detection (without it: over the database)")
    wk.add_argument("--stream-name", default="JILIANG_TELEMETRY",
                    help="the JetStream stream (default JILIANG_TELEMETRY, subjects jiliang.telemetry.<partition>."
                    "<kind>; another name NAME uses subjects jiliang.<name>.…)")
    wk.add_argument("--partitions", type=int, default=8,
                    help="partitions of the stream (fixed when the stream is created; default 8)")
    wk.add_argument("--consume", metavar="LIST", default=None,
                    help="the partitions this worker analyses, e.g. 0-3 or 0,2,5 (default: all; workers "
                    "sharing partitions take turns safely)")
    wk.add_argument("--no-mqtt", action="store_true", help="do not subscribe to MQTT (a detector worker only)")
    wk.set_defaults(func=cmd_worker)

    sst = sub.add_parser("stream", help="the NATS JetStream feed of the detector workers",
                         description="status: the stream's size, the oldest record it still holds, and per "
                         "partition its consumer (messages waiting, being analysed, handed back) and how many "
                         "record ids its detectors are behind the publisher, per kind. State gap: the stream no "
                         "longer holds a range the partition has not analysed (kept past its retention).")
    sst_sub = sst.add_subparsers(dest="stream_command", required=True)
    ss = sst_sub.add_parser("status", help="size, lag and state of every partition")
    ss.add_argument("--stream", metavar="URL", default=os.environ.get("JILIANG_NATS_URL") or "nats://127.0.0.1:4222",
                    help="NATS server (default $JILIANG_NATS_URL, else nats://127.0.0.1:4222)")
    ss.add_argument("--stream-name", default="JILIANG_TELEMETRY", help="the stream (default JILIANG_TELEMETRY)")
    ss.add_argument("--partitions", type=int, default=8, help="partitions the stream was made with (default 8)")
    ss.add_argument("--format", choices=["json", "table"], default="table")
    ss.set_defaults(func=cmd_stream_status)

    det = sub.add_parser("detect", help="run the detectors over telemetry not yet analysed",
                         description="Run every enabled detector over the records stored since its last run; "
                         "findings open alerts (one open alert per device and detector) or update them.")
    det.set_defaults(func=cmd_detect)

    tel = sub.add_parser("telemetry", help="telemetry housekeeping (retention)",
                         description="Telemetry housekeeping. prune: remove raw records older than a date "
                         "(default: the configured retention, JILIANG_TELEMETRY_RETENTION_DAYS, 730 days), "
                         "except the evidence of alerts under follow-up.")
    tel_sub = tel.add_subparsers(dest="telemetry_command", required=True)
    tp = tel_sub.add_parser("prune", help="remove raw records past the retention or older than --before "
                            "(evidence of alerts under follow-up kept)")
    tp.add_argument("--before", help="date (YYYY-MM-DD, Asia/Shanghai midnight); default: today minus the "
                    "retention (JILIANG_TELEMETRY_RETENTION_DAYS)")
    tp.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    tp.set_defaults(func=cmd_telemetry_prune)

    al = sub.add_parser("alerts", help="list alerts (SPEC 3.7)", description="Print every alert.")
    al.add_argument("--format", choices=["json", "table"], default="table")
    al.add_argument("--status", choices=["new", "triaged", "confirmed", "dismissed"])
    al.set_defaults(func=cmd_alerts)

    es = sub.add_parser("estimate", help="fleet error estimates (SPEC 3.4)",
                        description="chargers: each charger's energy error from all stored sessions (charger energy "
                        "against the vehicles' own BMS energy), anchored by chargers verified in the last year. "
                        "dispensers: each nozzle's volume error and each tank's leak rate from the tank balance "
                        "(gauge readings, deliveries and sales).")
    es.add_argument("what", choices=["chargers", "dispensers"])
    es.add_argument("--format", choices=["json", "table"], default="table")
    es.set_defaults(func=cmd_estimate)

    e = sub.add_parser("evaluate", help="MPE verdict for verification test points (SPEC 3.3)",
                       description="Read one JSON object (instrument_type, accuracy_class, stage, params, points) "
                       "from FILE or - (stdin) and print {conforming, points: [{point, mpe, verdict, margin}]}. "
                       "Exit 2 with a one-line reason naming an unknown type, class, point or missing field. "
                       "Low-confidence MPE values can be overridden with a YAML file named by JILIANG_RULES_FILE.")
    e.add_argument("file", help="a JSON file, or - for standard input")
    e.add_argument("--pretty", action="store_true", help="indent the JSON output")
    e.set_defaults(func=cmd_evaluate, needs_db=False)

    sp = sub.add_parser("sampling-plan", help="GB/T 2828.1 normal single sampling plan (SPEC 3.6)",
                        description="Print {code_letter, plan_letter, n, ac, re, inspect_all} for a lot size, AQL "
                        "and inspection level, following Table 2-A's arrows.")
    sp.add_argument("--lot-size", type=int, required=True, help="number of units in the lot")
    sp.add_argument("--aql", required=True, help="acceptance quality limit, a value of Table 2-A (0.65 … 6.5)")
    sp.add_argument("--level", default="II", choices=["S-1", "S-2", "S-3", "S-4", "I", "II", "III"],
                    help="inspection level (default II)")
    sp.set_defaults(func=cmd_sampling_plan, needs_db=False)

    dr = sub.add_parser("draw", help="verifiable random draws (双随机): verify a published draw",
                        description="Tools for the verifiable inspection draws (docs/draw.md).")
    dsub = dr.add_subparsers(dest="draw_command", metavar="ACTION", required=True)
    dv = dsub.add_parser("verify", help="re-check a published draw bundle (JSON) offline",
                         description="Recompute the frame hash, the seed commitment, the seed and the targets of "
                         "a published draw from the bundle alone (no database). Exit 0 when it reproduces, 1 when "
                         "not, 2 on bad input.")
    dv.add_argument("bundle", help="the published bundle (.json), - for standard input, or a plan id")
    dv.set_defaults(func=cmd_draw_verify, needs_db=False)

    cr = sub.add_parser("credit", help="credit grades (计量信用): regrade every entity from its events")
    csub = cr.add_subparsers(dest="action", metavar="ACTION", required=True)
    crg = csub.add_parser("regrade", help="score and grade every market-facing entity (logged)")
    crg.set_defaults(func=cmd_credit)

    rm = sub.add_parser("reminders", help="due-date reminders (到期提醒) for verifications")
    rmsub = rm.add_subparsers(dest="action", metavar="ACTION", required=True)
    rms = rmsub.add_parser("send", help="in-app messages and e-mails for instruments due soon or overdue (once each)")
    rms.add_argument("--as-of", help="date to judge from, YYYY-MM-DD (default today)")
    rms.add_argument("--within-days", type=int, default=None, help="due-soon horizon (default JILIANG_DUE_SOON_DAYS)")
    rms.set_defaults(func=cmd_reminders)

    cs = sub.add_parser("cases", help="inspection cases (案件): follow up rectification deadlines")
    cssub = cs.add_subparsers(dest="action", metavar="ACTION", required=True)
    cse = cssub.add_parser("escalate", help="mark near deadlines due and escalate overdue rectifications (logged)")
    cse.set_defaults(func=cmd_cases_escalate)

    tk = sub.add_parser("token", help="API tokens for machine clients (create, list, revoke)",
                        description="Tokens are shown once at creation and stored as SHA-256 digests.")
    tsub = tk.add_subparsers(dest="action", metavar="ACTION", required=True)
    tc = tsub.add_parser("create", help="create a token for an organisation")
    tc.add_argument("--org", required=True, help="the organisation's credit code")
    tc.add_argument("--role", required=True, choices=["regulator", "inspector", "institute", "manufacturer",
                                                      "utility", "market_entity"])
    tc.add_argument("--name", required=True, help="what the token is for, e.g. the device platform's name")
    tc.add_argument("--region", help="GB/T 2260 code, for the regional roles")
    tc.set_defaults(func=cmd_token)
    tl = tsub.add_parser("list", help="list tokens (never their secrets)")
    tl.add_argument("--org", help="only this organisation's (credit code)")
    tl.set_defaults(func=cmd_token)
    tr = tsub.add_parser("revoke", help="revoke a token by its id")
    tr.add_argument("id", type=int)
    tr.set_defaults(func=cmd_token)

    c = sub.add_parser("createsuperuser", help="create an administrator account")
    c.set_defaults(func=cmd_createsuperuser)

    from jiliang.verification.cli import add_cert_parser

    add_cert_parser(sub)  # jiliang cert verify|issue|revoke|keys
    from jiliang.factory.cli import add_factory_parser

    add_factory_parser(sub)  # jiliang factory upload|authorizations|sample
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    if getattr(args, "needs_db", True):
        try:
            _setup()
            ensure_migrated(verbose=True)
        except Exception as exc:  # a bad DATABASE_URL or an unreachable server
            return _fail(f"cannot open the database: {exc}")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
