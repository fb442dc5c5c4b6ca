"""Benchmark: telemetry ingest and detection throughput (issue 4 acceptance), each beside its baseline.

For each backend, in a fresh database with the simulated city's registry (``build_demo --scale city``,
86,100 instruments), generates N SPEC 3.2 records with NumPy/Polars for registered devices -- scale
transactions (55 %), household meter readings (35 %, one in 40 flagged), fuel sales (10 %), each device with
its own increasing ``seq`` and time, some amounts padded and some registers running backwards -- writes them
to an NDJSON file, and prints in the same run:

- ``raw_copy``: PostgreSQL only -- the same rows, already typed, COPYed in the binary format into the same
  indexed tables (no parsing, no checks, no dedupe): the ceiling;
- ``ingest``: ``jiliang ingest FILE`` (``jiliang.cli.main``), the real code path;
- ``naive``: one ORM ``save()`` per record on a sample, extrapolated;
- ``detect``: ``run_detectors()`` over all stored records (every enabled detector); the rate counts the
  records the detectors read (scale transactions and meter readings; fuel sales go to the tank balance);
- ``detect_loop``: the same detectors fed one record at a time (a per-record Python loop) on a sample: the
  records of 200 devices per kind.

    .venv/bin/python bench/telemetry_throughput.py                 # both: PostgreSQL 10,000,000, SQLite 2,000,000
    .venv/bin/python bench/telemetry_throughput.py --backend sqlite --records 500000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _fmt(template: str, *names: str) -> Any:
    """A Polars expression filling each ``{}`` of ``template`` with a column (no escaping: the values are
    identifiers and numbers)."""
    import polars as pl

    parts = template.split("{}")
    exprs: list[Any] = []
    for lit, name in zip(parts, [*names, None], strict=True):
        exprs.append(pl.lit(lit))
        if name is not None:
            exprs.append(pl.col(name).cast(pl.String))
    return pl.concat_str(exprs).alias("line")


def generate(devices: dict[str, Any], n: int, path: Path, seed: int) -> dict[str, dict[str, Any]]:
    """Write n records to ``path``; returns the typed columns per kind (for the raw COPY)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    by_type: dict[str, list[tuple[str, int]]] = {}
    for key, d in devices.items():
        by_type.setdefault(d.type, []).append((key, d.id))
    share = {"scale.txn": 0.55, "meter.reading": 0.35, "dispenser.sale": 0.10}
    types = {"scale.txn": ["scale"], "meter.reading": ["water_meter", "gas_meter"],
             "dispenser.sale": ["fuel_dispenser"]}
    start = int(np.datetime64("2026-09-01T00:00:00", "s").astype(np.int64))
    frames = []
    typed: dict[str, dict[str, Any]] = {}
    counts = {k: int(n * s) for k, s in share.items()}
    counts["scale.txn"] += n - sum(counts.values())
    for kind, m in counts.items():
        devs = [x for t in types[kind] for x in by_type.get(t, [])]
        keys = np.array([k for k, _ in devs])
        ids = np.array([i for _, i in devs], dtype=np.int64)
        k = np.arange(m)
        d = k % len(devs)                              # round-robin: each device's records in time order
        seq = k // len(devs) + 1
        step = 86400 if kind == "meter.reading" else 600
        secs = start + seq * step + (d % 500)
        cols: dict[str, Any] = {"device_id": ids[d], "ts": secs * 1_000_000, "seq": seq}
        df = pl.DataFrame({"kind": kind, "device": keys[d], "seq": seq,
                           "ts": ((secs + 8 * 3600) * 1000).astype("datetime64[ms]")})
        df = df.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S+08:00"))
        if kind == "scale.txn":
            net = rng.integers(50, 3000, m)
            price = rng.choice([800, 1200, 1600, 2400, 3600], m)
            amount = np.rint(net * price / 1000).astype(np.int64) + (rng.random(m) < 0.001) * 50
            cols |= {"net_g": net, "tare_g": np.zeros(m, np.int64), "unit_price_fen_per_kg": price,
                     "amount_fen": amount}
            df = df.with_columns(net_g=net, price=price, amount=amount).select(_fmt(
                '{"kind":"scale.txn","device":"{}","ts":"{}","seq":{},"net_g":{},"tare_g":0,'
                '"unit_price_fen_per_kg":{},"amount_fen":{}}', "device", "ts", "seq", "net_g", "price", "amount"))
        elif kind == "meter.reading":
            milli = seq * rng.integers(100, 900, len(devs))[d] * np.where(d % 997 == 0, -1, 1) + 10**7
            flags = np.where(rng.random(m) < 0.025, 4, 0)
            cols |= {"register_milli": milli, "flags": flags}
            reg = pl.Series(milli // 1000).cast(pl.String) + "." + pl.Series(milli % 1000).cast(pl.String).str.zfill(3)
            fl = pl.Series(np.where(flags > 0, ',"flags":["low_battery"]', ""))
            df = df.with_columns(reg=reg, fl=fl).select(_fmt(
                '{"kind":"meter.reading","device":"{}","ts":"{}","seq":{},"register":{}{}}',
                "device", "ts", "seq", "reg", "fl"))
        else:
            vol = rng.integers(5000, 80000, m)
            amount = vol * 8
            tot = 10**8 + seq * 50000
            cols |= {"volume_ml": vol, "amount_fen": amount, "totalizer_ml": tot}
            df = df.with_columns(vol=vol, amount=amount, tot=tot).select(_fmt(
                '{"kind":"dispenser.sale","device":"{}","ts":"{}","seq":{},"volume_ml":{},"amount_fen":{},'
                '"totalizer_ml":{}}', "device", "ts", "seq", "vol", "amount", "tot"))
        typed[kind] = {c: np.asarray(v, dtype=np.int64) for c, v in cols.items()}
        frames.append(df.to_series())
    # interleave the kinds as a live feed would, by time
    lines = pl.concat(frames)
    order = np.argsort(np.concatenate([t["ts"] for t in typed.values()]), kind="stable")
    lines = lines.gather(order)
    with path.open("wb") as f:
        f.write(("\n".join(lines.to_list()) + "\n").encode())
    return typed


def _profiler() -> Any:
    if not os.environ.get("JL_BENCH_PROFILE"):
        return None
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    return prof


def _report(prof: Any, what: str) -> None:
    if prof is not None:
        import pstats

        prof.disable()
        print(f"--- profile: {what}", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(14)


def city_database(backend: str, home: Path, name: str) -> None:
    """A fresh database (PostgreSQL ``name``, or SQLite under ``home``) with Django set up on it, migrated,
    and the simulated city's registry (``build_demo --scale city`` without telemetry)."""
    os.environ["JILIANG_HOME"] = str(home)
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name}")
            c.execute(f"CREATE DATABASE {name}")
        os.environ["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{name}"
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{home}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jiliang.config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from jiliang.simulation.demo import build_demo

    build_demo(scale="city", seed=20261123, fresh=True, progress=False, with_telemetry=False)


def run_backend(backend: str, n: int, naive_n: int, loop_n: int, seed: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="jl-tel-"))
    city_database(backend, home, "jl_tel_bench")
    import datetime as dt

    import numpy as np
    from django.db import connection, transaction

    from jiliang.cli import main as jiliang
    from jiliang.engine.detectors import REGISTRY
    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.ingest import TABLES, pg_binary_copy
    from jiliang.monitoring.ingest import registry_snapshot as snap
    from jiliang.monitoring.models import MeterReading
    from jiliang.monitoring.partitions import ensure_partitions

    devices, _places = snap()
    path = home / "telemetry.ndjson"
    t = time.perf_counter()
    typed = generate(devices, n, path, seed)
    out: dict[str, Any] = {"backend": backend, "records": n, "generate_s": round(time.perf_counter() - t, 1),
                           "file_mb": round(path.stat().st_size / 1e6)}

    if backend == "postgresql":
        t = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur:
            for kind, cols in typed.items():
                model, names, _key = TABLES[kind]
                ensure_partitions(model, cols["ts"])
                payload = pg_binary_copy(model, names, cols)
                assert payload is not None
                with cur.cursor.copy(f'COPY "{model._meta.db_table}" ({", ".join(names)}) FROM STDIN '
                                     "(FORMAT BINARY)") as copy:
                    copy.write(payload)
        raw_s = time.perf_counter() - t
        out["raw_copy_records_per_s"] = round(n / raw_s)
        with connection.cursor() as cur:
            for kind in typed:
                cur.execute(f'TRUNCATE "{TABLES[kind][0]._meta.db_table}"')
            cur.execute("VACUUM ANALYZE")

    prof = _profiler()
    t = time.perf_counter()
    code = jiliang(["ingest", str(path)])
    ingest_s = time.perf_counter() - t
    _report(prof, "ingest")
    assert code == 0
    stored = sum(TABLES[k][0].objects.count() for k in typed)
    assert stored == n, (stored, n)
    out["ingest_s"] = round(ingest_s, 1)
    out["ingest_records_per_s"] = round(n / ingest_s)
    if "raw_copy_records_per_s" in out:
        out["ingest_share_of_raw_copy"] = round(out["ingest_records_per_s"] / out["raw_copy_records_per_s"], 3)

    # naive: one ORM save() per record (a sample of meter readings with fresh seqs), extrapolated
    meters = typed["meter.reading"]
    t = time.perf_counter()
    for i in range(naive_n):
        with transaction.atomic():
            MeterReading(device_id=int(meters["device_id"][i]), seq=int(meters["seq"][i]) + 10**9,
                         ts=dt.datetime.fromtimestamp(meters["ts"][i] / 1e6, dt.UTC),
                         register_milli=int(meters["register_milli"][i]), flags=0).save()
    out["naive_orm_records_per_s"] = round(naive_n / (time.perf_counter() - t))

    prof = _profiler()
    t = time.perf_counter()
    report = run_detectors()
    detect_s = time.perf_counter() - t
    _report(prof, "detect")
    stored = sum(TABLES[k][0].objects.count() for k in typed)
    # the records the detectors read: each kind's rows once (detectors of a kind share each chunk); the fuel
    # sales are analysed by the tank balance (jiliang detect's fuel step), which needs gauge readings this
    # data set does not have, so they are not counted
    analysed: dict[str, int] = {}
    for d in report.detectors:
        kind = REGISTRY[d.key].kind
        analysed[kind] = max(analysed.get(kind, 0), d.rows)
    out["detect_s"] = round(detect_s, 1)
    out["detect_records_analysed"] = sum(analysed.values())
    out["detect_records_per_s"] = round(sum(analysed.values()) / detect_s)
    out["stored_records_per_detect_s"] = round(stored / detect_s)
    out["detector_rows"] = {d.key: d.rows for d in report.detectors}
    out["alerts_opened"] = sum(d.opened for d in report.detectors)

    # the same detectors fed one record at a time
    from jiliang.monitoring.detection import load_extras

    done = 0
    t = time.perf_counter()
    for kind in ("scale.txn", "meter.reading"):
        cols = typed[kind]
        dets = [cls() for cls in REGISTRY.values() if cls.kind == kind]
        states: list[dict[str, Any]] = [{} for _ in dets]
        # the records of 200 devices, so that the per-device state a detector carries from call to call
        # stays small (with the whole city's devices the loop would measure state size, not per-record work)
        few = np.flatnonzero(np.isin(cols["device_id"], np.unique(cols["device_id"])[:200]))[: loop_n // 2]
        m = few.size
        extra = load_extras(np.unique(cols["device_id"][few]))
        for i in few.tolist():
            one = {c: v[i : i + 1] for c, v in cols.items() if c != "device_id"}
            one["device"] = cols["device_id"][i : i + 1]
            one["ts"] = one["ts"] / 1e6
            dev = int(one["device"][0])
            one["place"] = np.array([extra["place"].get(dev, -dev)])
            one["max_rate_milli_per_h"] = np.array([extra["capacity"].get(dev, 13800.0)])
            for k, det in enumerate(dets):
                _f, states[k] = det.run(one, states[k])
        done += m
    out["detect_loop_records_per_s"] = round(done / (time.perf_counter() - t))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    p.add_argument("--records", type=int, default=0, help="default 10,000,000 (PostgreSQL), 2,000,000 (SQLite)")
    p.add_argument("--naive", type=int, default=3000, help="records for the naive ORM sample")
    p.add_argument("--loop", type=int, default=20000, help="records for the per-record detector loop")
    p.add_argument("--seed", type=int, default=20261123)
    args = p.parse_args()
    if args.backend == "both":
        results = []
        for b in ("postgresql", "sqlite"):
            cmd = [sys.executable, __file__, "--backend", b, "--naive", str(args.naive), "--loop", str(args.loop),
                   "--seed", str(args.seed)] + (["--records", str(args.records)] if args.records else [])
            res = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603 (this script itself)
            sys.stderr.write(res.stderr[-4000:])
            res.check_returncode()
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(results, indent=1))
        return
    n = args.records or (10_000_000 if args.backend == "postgresql" else 2_000_000)
    print(json.dumps(run_backend(args.backend, n, args.naive, args.loop, args.seed)))


if __name__ == "__main__":
    main()
