"""Reading telemetry in chunks for the detectors: the packed sort, chunk boundaries, and the background
read of the next chunk (a second connection, used outside a caller's transaction)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from django.db import connection

from jiliang.monitoring.detection import _Prefetch, _read_chunk, run_detectors, sort_order
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert, DetectorCursor
from tests.world import World


@pytest.mark.parametrize("device_span", [50, 2**40])
def test_sort_order_is_lexsort_by_device_then_time_with_ties_in_input_order(device_span: int) -> None:
    rng = np.random.default_rng(7)
    n = 5000
    device = rng.integers(0, device_span, n, dtype=np.int64)
    device[::7] = device[0]  # many rows of one device, some at the same time
    ts = 1.7e9 + rng.integers(0, 86400 * 30, n) + rng.integers(0, 10**6, n) / 1e6
    ts[::11] = ts[0]
    order = sort_order(device, ts)
    assert order is not None
    assert np.array_equal(order, np.lexsort((ts, device)))  # lexsort is stable: ties keep their input order
    assert sort_order(device[order], ts[order]) is None  # sorted input needs no reordering


def _records() -> list[bytes]:
    lines = []
    for seq in range(1, 41):  # SC-F-1 overcharges on every fifth sale; SC-N-1 is honest
        for dev in ("SC-F-1", "SC-N-1"):
            amount = 1560 if dev == "SC-F-1" and seq % 5 == 0 else 1500
            ts = f"2026-11-01T{8 + seq // 60:02d}:{seq % 60:02d}:00+08:00"
            lines.append({"kind": "scale.txn", "device": dev, "ts": ts, "seq": seq, "net_g": 1000, "tare_g": 0,
                          "unit_price_fen_per_kg": 1500, "amount_fen": amount})
    register = 100.0
    for seq in range(1, 31):  # the meter runs backwards from the 20th reading
        register += 0.2 if seq < 20 else -0.1
        lines.append({"kind": "meter.reading", "device": "WM-N-1", "ts": f"2026-11-{1 + seq // 24:02d}T{seq % 24:02d}"
                      ":00:00+08:00", "seq": seq, "register": round(register, 3)})
    return [json.dumps(x).encode() for x in lines]


def _outcome() -> tuple[list[tuple[str, str, str]], dict[str, tuple[int, Any]]]:
    alerts = sorted(Alert.objects.values_list("detector", "device__device_id", "severity"))
    cursors = {c.key: (c.last_id, c.state) for c in DetectorCursor.objects.all()}
    return alerts, cursors


@pytest.mark.django_db(transaction=True)
def test_small_chunks_with_background_reads_give_the_same_alerts_and_states(world: World) -> None:
    ingest_lines(_records(), source="t")
    # outside a transaction the next chunk is read on a second connection -- except on in-memory SQLite
    assert _Prefetch(7).enabled == (connection.vendor != "sqlite" or not connection.is_in_memory_db())
    report = run_detectors(chunk=7)
    assert report.rows > 0
    chunked = _outcome()
    assert ("scale.amount_mismatch", "SC-F-1", "critical") in chunked[0]
    assert ("meter.reverse_flow", "WM-N-1", "critical") in chunked[0]
    Alert.objects.all().delete()
    DetectorCursor.objects.all().delete()
    run_detectors()
    whole = _outcome()
    assert chunked == whole


@pytest.mark.django_db(transaction=True)
def test_a_prefetched_chunk_that_is_not_the_cursors_range_is_read_again(world: World) -> None:
    ingest_lines(_records(), source="t")
    ids = sorted(_read_chunk("scale.txn", 0, 10**9)["id"].tolist())  # type: ignore[index]
    p = _Prefetch(5)
    p.enabled = True  # also on in-memory SQLite: the read below is the one that counts
    try:
        p.request("scale.txn", 0, ids[4])
        got = p.take("scale.txn", ids[2], ids[7])  # the cursor moved meanwhile: the prefetched chunk is stale
        assert got is not None and sorted(got["id"].tolist()) == ids[3:8]
        assert p.pending is None
        assert p.take("scale.txn", ids[-1], ids[-1] + 100) is None  # nothing past the last id
    finally:
        p.close()


@pytest.mark.django_db(transaction=True)
def test_a_gap_in_the_ids_wider_than_a_chunk_is_skipped(world: World) -> None:
    """Chunks are id ranges: rows deleted in the middle (retention, or ids never committed) leave a gap
    that the run jumps over instead of reading empty ranges one by one."""
    from jiliang.monitoring.models import ScaleTxn, SegmentMark

    ingest_lines(_records(), source="t")
    SegmentMark.objects.all().delete()  # the rows are edited by hand below: read them as rows, not segments
    ids = sorted(ScaleTxn.objects.values_list("id", flat=True))
    ScaleTxn.objects.filter(id__gt=ids[5], id__lt=ids[-5]).delete()
    ScaleTxn.objects.filter(id=ids[-1]).update(id=ids[-1] + 10**7)  # a gap of ten million ids
    report = run_detectors(keys=["scale.amount_mismatch"], chunk=3)
    assert report.rows == ScaleTxn.objects.count() == 11
    assert DetectorCursor.objects.get(key="scale.amount_mismatch").last_id == ids[-1] + 10**7
