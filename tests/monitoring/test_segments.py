"""Column segments written at ingest and read by the detector runner (ADR 0012): they hold exactly the
stored rows, detection from them equals detection from the rows, rows without a segment are still read,
and consumed or pruned segments go away without losing a record."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pytest

from jiliang.engine.segments import decode
from jiliang.monitoring import detection
from jiliang.monitoring.detection import DetectorConfig, run_detectors
from jiliang.monitoring.ingest import SEGMENT_COLUMNS, ingest_lines
from jiliang.monitoring.models import Alert, DetectorCursor, MeterReading, ScaleTxn, SegmentMark, TelemetrySegment
from tests.monitoring.test_detection_chunks import _outcome, _records
from tests.world import World


def _segment_rows(kind: str) -> dict[str, list[int]]:
    parts = [decode(bytes(b)) for b in TelemetrySegment.objects.filter(kind=kind).order_by("first_id")
             .values_list("data", flat=True)]
    return {c: [v for p in parts for v in p[c].tolist()] for c in SEGMENT_COLUMNS[kind]}


def _table_rows() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {c: [] for c in SEGMENT_COLUMNS["scale.txn"]}
    for row in ScaleTxn.objects.order_by("id").values_list(*(c for c in SEGMENT_COLUMNS["scale.txn"])):
        for c, v in zip(SEGMENT_COLUMNS["scale.txn"], row, strict=True):
            out[c].append(int(v.timestamp() * 1_000_000) if isinstance(v, dt.datetime) else int(v))
    return out


@pytest.mark.django_db(transaction=True)
def test_segments_hold_exactly_the_stored_rows_and_a_resend_adds_only_the_new_ones(world: World) -> None:
    lines = _records()
    ingest_lines(lines[:50], source="t")
    # a resend of everything, in small batches: the first 50 lines are repeats, stored nowhere twice
    report = ingest_lines(lines, source="t", batch_size=17)
    assert report.duplicates == 50
    assert _segment_rows("scale.txn") == _table_rows()
    assert ScaleTxn.objects.count() == 80
    assert len(_segment_rows("meter.reading")["id"]) == MeterReading.objects.count() == 30
    seg = TelemetrySegment.objects.filter(kind="scale.txn").order_by("-last_id").first()
    assert seg is not None and seg.max_ts == ScaleTxn.objects.filter(id__lte=seg.last_id, id__gte=seg.first_id) \
        .order_by("-ts").values_list("ts", flat=True).first()
    assert set(SegmentMark.objects.values_list("kind", "covered_after")) == {("scale.txn", 0), ("meter.reading", 0)}


@pytest.mark.django_db(transaction=True)
def test_detection_from_segments_equals_detection_from_rows(world: World, monkeypatch: Any) -> None:
    ingest_lines(_records(), source="t")
    calls: list[str] = []

    def no_rows(kind: str, *args: Any) -> None:
        calls.append(kind)
        raise AssertionError(f"{kind} was read as rows")

    monkeypatch.setattr(detection, "_read_chunk", no_rows)
    monkeypatch.setattr(detection, "_read_chunk_adbc", no_rows)
    run_detectors(keys=["scale.amount_mismatch", "meter.reverse_flow", "meter.stuck_register"], chunk=9)
    from_segments = _outcome()
    assert ("scale.amount_mismatch", "SC-F-1", "critical") in from_segments[0]
    assert ("meter.reverse_flow", "WM-N-1", "critical") in from_segments[0]
    monkeypatch.undo()
    Alert.objects.all().delete()
    DetectorCursor.objects.all().delete()
    SegmentMark.objects.all().delete()  # no mark: every row is read as a row
    run_detectors(keys=["scale.amount_mismatch", "meter.reverse_flow", "meter.stuck_register"], chunk=9)
    assert _outcome() == from_segments


@pytest.mark.django_db(transaction=True)
def test_rows_stored_before_segments_are_read_as_rows_and_the_rest_from_segments(world: World) -> None:
    lines = _records()
    scale = [x for x in lines if b"scale.txn" in x]
    ingest_lines(scale[:30], source="t")
    TelemetrySegment.objects.all().delete()  # as if stored by a version without segments
    SegmentMark.objects.all().delete()
    before = max(ScaleTxn.objects.values_list("id", flat=True))
    ingest_lines(scale[30:], source="t")
    assert SegmentMark.objects.get(kind="scale.txn").covered_after == before
    assert min(_segment_rows("scale.txn")["id"]) > before
    report = run_detectors(keys=["scale.amount_mismatch"], chunk=7)
    assert report.rows == 80
    mixed = _outcome()
    Alert.objects.all().delete()
    DetectorCursor.objects.all().delete()
    SegmentMark.objects.all().delete()
    run_detectors(keys=["scale.amount_mismatch"], chunk=7)
    assert _outcome() == mixed


@pytest.mark.django_db(transaction=True)
def test_consumed_segments_are_deleted_and_a_detector_enabled_later_still_reads_every_row(world: World) -> None:
    ingest_lines(_records(), source="t")
    DetectorConfig.objects.create(key="meter.reverse_flow", enabled=False, params={})
    run_detectors()
    # every enabled meter detector has read past all segments: they are gone, and the mark covers no row
    assert not TelemetrySegment.objects.filter(kind="meter.reading").exists()
    top = max(MeterReading.objects.values_list("id", flat=True))
    assert SegmentMark.objects.get(kind="meter.reading").covered_after == top
    assert not Alert.objects.filter(detector="meter.reverse_flow").exists()
    DetectorConfig.objects.filter(key="meter.reverse_flow").update(enabled=True)
    report = run_detectors(keys=["meter.reverse_flow"])
    assert report.rows == 30
    assert Alert.objects.filter(detector="meter.reverse_flow", device__device_id="WM-N-1").exists()
    # rows stored after the consumption have segments again, above the mark
    more = [json.dumps({"kind": "meter.reading", "device": "WM-N-1", "ts": "2026-11-03T08:00:00+08:00",
                        "seq": 99, "register": 103.0}).encode()]
    ingest_lines(more, source="t")
    seg = TelemetrySegment.objects.get(kind="meter.reading")
    assert seg.first_id > top and seg.rows == 1


@pytest.mark.django_db(transaction=True)
def test_pruning_drops_old_segments_and_raises_the_mark(world: World) -> None:
    from jiliang.monitoring.partitions import prune

    ingest_lines(_records(), source="t")
    top = max(MeterReading.objects.values_list("id", flat=True))
    prune(before=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    assert not TelemetrySegment.objects.exists()
    assert SegmentMark.objects.get(kind="meter.reading").covered_after == top
    assert np.all(np.array([c for _k, c in SegmentMark.objects.values_list("kind", "covered_after")]) > 0)


@pytest.mark.django_db(transaction=True)
def test_a_row_saved_through_the_orm_gets_its_segment_and_is_detected(world: World) -> None:
    ingest_lines(_records(), source="t")
    run_detectors(keys=["meter.reverse_flow"])
    device = MeterReading.objects.values_list("device_id", flat=True).first()
    last = MeterReading.objects.filter(device_id=device).order_by("-seq").first()
    assert last is not None
    Alert.objects.all().delete()
    MeterReading(device_id=device, seq=last.seq + 1, ts=last.ts + dt.timedelta(hours=1),
                 register_milli=last.register_milli - 5000, flags=0).save()  # runs backwards
    seg = TelemetrySegment.objects.order_by("-id").first()
    assert seg is not None and seg.rows == 1 and seg.kind == "meter.reading"
    assert decode(bytes(seg.data))["register_milli"].tolist() == [last.register_milli - 5000]
    report = run_detectors(keys=["meter.reverse_flow"])
    assert report.rows == 1
    assert Alert.objects.filter(detector="meter.reverse_flow", device_id=device).exists()
