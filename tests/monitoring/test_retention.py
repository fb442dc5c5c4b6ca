"""Raw-record retention (原始数据保留期): old records go, the evidence of open alerts (预警证据) stays."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from jiliang.cli import main
from jiliang.monitoring.detection import alert_decide, run_detectors
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert, ScaleTxn
from jiliang.monitoring.partitions import prune
from tests.world import World

pytestmark = pytest.mark.django_db


def txn(device: str, seq: int, month: int, amount: int = 1500) -> bytes:
    return json.dumps({"kind": "scale.txn", "device": device, "ts": f"2026-{month:02d}-10T08:00:00+08:00",
                       "seq": seq, "net_g": 1000, "tare_g": 0, "unit_price_fen_per_kg": 1500,
                       "amount_fen": amount}).encode()


def test_prune_keeps_open_alert_evidence_and_removes_the_rest(world: World, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    # SC-F-1 overcharges in September (an open alert); SC-N-1 is honest; both also sent records in November
    ingest_lines([txn("SC-F-1", 1, 9, 1600), txn("SC-F-1", 2, 9), txn("SC-N-1", 1, 9), txn("SC-N-1", 2, 9),
                  txn("SC-F-1", 3, 11), txn("SC-N-1", 3, 11)], source="t")
    run_detectors()
    assert Alert.objects.filter(status="new", device__device_id="SC-F-1").count() == 1
    before = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)

    dry = prune(before=before, dry_run=True)
    assert dry.deleted["monitoring_scaletxn"] == 2 and dry.kept["monitoring_scaletxn"] == 2
    assert ScaleTxn.objects.count() == 6

    assert main(["telemetry", "prune", "--before", "2026-10-01"]) == 0
    assert "monitoring_scaletxn: removed 2, kept 2" in capsys.readouterr().out
    left = sorted(ScaleTxn.objects.values_list("device__device_id", "seq"))
    assert left == [("SC-F-1", 1), ("SC-F-1", 2), ("SC-F-1", 3), ("SC-N-1", 3)]

    # once the alert is decided its records are no longer evidence of an open alert
    alert = Alert.objects.get(device__device_id="SC-F-1")
    alert_decide(actor=world.users["admin"], alert_id=alert.pk, status="dismissed", reason="scale repaired")
    report = prune(before=before)
    assert report.deleted["monitoring_scaletxn"] == 2
    assert sorted(ScaleTxn.objects.values_list("seq", flat=True)) == [3, 3]
