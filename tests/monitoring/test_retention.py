"""Raw-record retention (原始数据保留期): old records go, the evidence of open alerts (预警证据) stays."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

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


def test_retention_setting_prunes_but_keeps_evidence_until_the_follow_up_is_finished(
        world: World, settings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The configured retention (JILIANG_TELEMETRY_RETENTION_DAYS) decides the cut-off; a confirmed alert's
    records stay while its inspection task is open and while a case opened by it is not closed."""
    import datetime as dt

    from jiliang.accounts.models import SystemPrincipal
    from jiliang.monitoring.partitions import prune_expired, retention_cutoff
    from jiliang.supervision.models import Case, Finding, InspectionTask
    from jiliang.supervision.services import alert_task_open
    from tests.supervision.inspection_setup import make_inspectors

    now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    settings.JILIANG_TELEMETRY_RETENTION_DAYS = 0
    assert retention_cutoff(now) is None and prune_expired(now=now) is None
    settings.JILIANG_TELEMETRY_RETENTION_DAYS = 30  # records before 2026-10-24 (Asia/Shanghai) are past it
    cutoff = retention_cutoff(now)
    assert cutoff is not None and cutoff.date() == dt.date(2026, 10, 24) and cutoff.utcoffset() == dt.timedelta(hours=8)

    ingest_lines([txn("SC-F-1", 1, 9, 1600), txn("SC-F-1", 2, 11), txn("SC-N-1", 1, 9), txn("SC-N-1", 2, 11)],
                 source="t")
    run_detectors()
    alert = Alert.objects.get(device__device_id="SC-F-1")
    system = SystemPrincipal("system:test")
    alert_decide(actor=system, alert_id=alert.pk, status="confirmed")

    def left() -> list[tuple[str, int]]:
        return sorted(ScaleTxn.objects.values_list("device__device_id", "seq"))

    # confirmed, no inspection task yet: the evidence stays; the honest scale's old record goes
    report = prune_expired(now=now)
    assert report is not None and report.kept["monitoring_scaletxn"] == 1
    assert left() == [("SC-F-1", 1), ("SC-F-1", 2), ("SC-N-1", 2)]

    make_inspectors("440304", 2)
    task = alert_task_open(actor=world.users["futian_regulator"], alert_id=alert.pk)
    assert prune_expired(now=now).kept["monitoring_scaletxn"] == 1  # type: ignore[union-attr]
    # the task is completed but it opened a case that is not closed yet
    InspectionTask.objects.filter(pk=task.pk).update(status=InspectionTask.Status.COMPLETED)
    finding = Finding.objects.create(task=task, instrument=alert.device, present=True, conforming=False,
                                     recorded_by="t")
    case = Case.objects.create(task=task, finding=finding, entity=alert.owner, legal_basis="计量法",
                               order="责令改正", deadline=dt.date(2026, 12, 31))
    assert prune_expired(now=now).kept["monitoring_scaletxn"] == 1  # type: ignore[union-attr]
    assert ("SC-F-1", 1) in left()
    # case closed: the follow-up is finished and the old record goes through the CLI's default cut-off
    # (today's retention reaching back to 2026-10-01, whatever the date the test runs)
    Case.objects.filter(pk=case.pk).update(status=Case.Status.CLOSED)
    settings.JILIANG_TELEMETRY_RETENTION_DAYS = (dt.date.today() - dt.date(2026, 10, 1)).days
    assert main(["telemetry", "prune"]) == 0
    out = capsys.readouterr().out
    assert "records before" in out
    assert left() == [("SC-F-1", 2), ("SC-N-1", 2)]


def test_prune_cli_with_retention_off_removes_nothing(world: World, settings: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    settings.JILIANG_TELEMETRY_RETENTION_DAYS = 0
    ingest_lines([txn("SC-N-1", 1, 1)], source="t")
    assert main(["telemetry", "prune"]) == 0
    assert "retention is off" in capsys.readouterr().out
    assert ScaleTxn.objects.count() == 1
