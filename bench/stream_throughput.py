"""Benchmark: detection through the NATS JetStream feed (ADR 0003) beside detection over the database.

In a fresh PostgreSQL database with the simulated city's registry (86,100 instruments), N telemetry records
(``bench/telemetry_throughput.py``'s generator: scale transactions, meter readings, fuel sales) are ingested
with ``jiliang ingest``, and in the same run:

- ``database``: ``run_detectors()`` over them in this process (the embedded path and the baseline);
- the records ingested again into emptied tables, then ``publish``: ``publish_pending`` to a fresh stream
  (reading the column segments, partitioning by place, Arrow IPC, waiting for the server's acknowledgements);
- ``consume_1``: one worker process analysing every partition;
- ``consume_2``: the durable consumers reset and two worker processes side by side, each half of the
  partitions -- the scale-out the stream exists for (on this 2-core machine they share the cores with
  PostgreSQL and NATS).

Every path must open the same alerts.  Rates count the records the detectors read (scale transactions and
meter readings).

    .venv/bin/python bench/stream_throughput.py --records 2000000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
URL = "nats://127.0.0.1:4222"


def _worker(stream: str, partitions: int, mine: list[int], out: Any) -> None:
    import django

    django.setup()  # a fresh interpreter (spawn): the settings come from the environment the parent set
    from jiliang.monitoring.stream import JetStreamLink, consume, stream_prefix

    link = JetStreamLink(URL, stream=stream, prefix=stream_prefix(stream), partitions=partitions)
    t = time.perf_counter()
    rep = consume(link, partitions=mine, fetch=64, wait_s=0.5)
    out.put((rep.rows, time.perf_counter() - t, rep.opened))
    link.close()


def _consume(stream: str, partitions: int, groups: list[list[int]]) -> tuple[int, float, float]:
    from django.db import connections

    connections.close_all()
    ctx = mp.get_context("spawn")  # not fork: the parent has the NATS client's and polars' threads
    q = ctx.Queue()
    t = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(stream, partitions, g, q)) for g in groups]
    for p in procs:
        p.start()
    got = [q.get(timeout=3600) for _ in procs]
    wall = time.perf_counter() - t
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    # the workers' own time (without starting Python and Django), the slowest of them
    return sum(r for r, _s, _o in got), max(s for _r, s, _o in got), round(wall, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=20261123)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="jl-stream-"))
    from telemetry_throughput import city_database, generate

    city_database("postgresql", home, "jl_stream_bench")
    from django.db import connection

    from jiliang.cli import main as jiliang
    from jiliang.engine.detectors import REGISTRY
    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.ingest import TABLES
    from jiliang.monitoring.ingest import registry_snapshot as snap
    from jiliang.monitoring.models import Alert, DetectorCursor, SegmentMark, TelemetrySegment
    from jiliang.monitoring.stream import JetStreamLink, publish_pending, stream_prefix

    devices, _places = snap()
    path = home / "telemetry.ndjson"
    typed = generate(devices, args.records, path, args.seed)
    assert jiliang(["ingest", str(path)]) == 0
    out: dict[str, Any] = {"records": args.records, "partitions": args.partitions}

    t = time.perf_counter()
    report = run_detectors()
    db_s = time.perf_counter() - t
    analysed: dict[str, int] = {}
    for d in report.detectors:
        analysed[REGISTRY[d.key].kind] = max(analysed.get(REGISTRY[d.key].kind, 0), d.rows)
    n = sum(analysed.values())
    alerts_db = set(Alert.objects.values_list("detector", "device_id"))
    out.update(analysed=n, database_s=round(db_s, 1), database_records_per_s=round(n / db_s),
               alerts=len(alerts_db))

    def reset_detection() -> None:
        Alert.objects.all().delete()
        DetectorCursor.objects.all().delete()

    # the same records again, with their column segments, into emptied tables
    reset_detection()
    with connection.cursor() as cur:
        for kind in typed:
            cur.execute(f'TRUNCATE "{TABLES[kind][0]._meta.db_table}"')
    TelemetrySegment.objects.all().delete()
    SegmentMark.objects.all().delete()
    assert jiliang(["ingest", str(path)]) == 0

    stream = f"JBENCH_{uuid.uuid4().hex[:8]}"
    link = JetStreamLink(URL, stream=stream, prefix=stream_prefix(stream), partitions=args.partitions)
    try:
        t = time.perf_counter()
        pub = publish_pending(link)
        pub_s = time.perf_counter() - t
        out.update(publish_s=round(pub_s, 1), publish_records_per_s=round(pub.rows / pub_s), messages=pub.messages)
        starts = dict(DetectorCursor.objects.filter(key__contains="@").values_list("key", "last_id"))

        every = list(range(args.partitions))
        rows, s, wall = _consume(stream, args.partitions, [every])
        assert rows == n, (rows, n)
        assert set(Alert.objects.values_list("detector", "device_id")) == alerts_db
        out.update(consume_1_s=round(s, 1), consume_1_records_per_s=round(rows / s), consume_1_wall_s=wall)

        # again from the start of the stream, by two workers
        reset_detection()
        for key, last in starts.items():
            DetectorCursor.objects.create(key=key, last_id=last)
        for p in every:
            link._call(link.js.delete_consumer(link.stream, f"detect-{p}"))
        link._subs.clear()
        half = args.partitions // 2
        rows, s, wall = _consume(stream, args.partitions, [every[:half], every[half:]])
        assert rows == n, (rows, n)
        assert set(Alert.objects.values_list("detector", "device_id")) == alerts_db
        out.update(consume_2_s=round(s, 1), consume_2_records_per_s=round(rows / s), consume_2_wall_s=wall,
                   speedup_2_workers=round(s and (out["consume_1_s"] / s), 2),
                   consume_2_vs_database=round((rows / s) / out["database_records_per_s"], 2))
    finally:
        link._call(link.js.delete_stream(link.stream))
        link.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
