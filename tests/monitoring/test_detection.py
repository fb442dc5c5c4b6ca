"""From stored telemetry to alerts: jiliang detect, one open alert per device and detector, lifecycle."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from jiliang.core.errors import JiliangError
from jiliang.monitoring.detection import alert_decide, run_detectors
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert, DetectorConfig
from jiliang.registry.models import Instrument
from tests.world import World

pytestmark = pytest.mark.django_db


def txn(seq: int, amount: int, device: str = "SC-F-1") -> bytes:
    return json.dumps({"kind": "scale.txn", "device": device, "ts": f"2026-11-01T08:{seq:02d}:00+08:00", "seq": seq,
                       "net_g": 1000, "tare_g": 0, "unit_price_fen_per_kg": 1500, "amount_fen": amount}).encode()


def reading(seq: int, hour: int, register: float, flags: list[str] | None = None) -> bytes:
    return json.dumps({"kind": "meter.reading", "device": "WM-N-1", "ts": f"2026-11-0{1 + hour // 24}T{hour % 24:02d}"
                       ":00:00+08:00", "seq": seq, "register": register, "flags": flags or []}).encode()


def test_findings_open_one_alert_then_update_it(world: World) -> None:
    ingest_lines([txn(1, 1500), txn(2, 1560), txn(3, 1500, "SC-N-1")], source="t")
    run_detectors()
    a = Alert.objects.get(detector="scale.amount_mismatch")
    assert a.device.device_id == "SC-F-1" and a.status == "new" and a.severity == "critical"
    assert a.evidence["mismatches"] == 1 and a.evidence["examples"][0]["expected_fen"] == 1500
    assert run_detectors().rows == 0, "nothing new to analyse"
    ingest_lines([txn(4, 1600)], source="t")
    run_detectors()
    a.refresh_from_db()
    assert Alert.objects.filter(detector="scale.amount_mismatch").count() == 1 and a.occurrences == 2


def test_reverse_flow_and_software_checksum(world: World) -> None:
    Instrument.objects.filter(device_id="SC-F-1").update(sw_hash="a1b2")
    ev = json.dumps({"kind": "scale.event", "device": "SC-F-1", "ts": "2026-11-01T07:00:00+08:00", "seq": 99,
                     "event": "software", "sw_id": "V2", "sw_hash": "ffff"}).encode()
    ingest_lines([reading(1, 0, 100.0), reading(2, 6, 100.5), reading(3, 12, 100.2), ev], source="t")
    run_detectors()
    detectors = set(Alert.objects.values_list("detector", flat=True))
    assert {"meter.reverse_flow", "scale.software_checksum"} <= detectors
    rev = Alert.objects.get(detector="meter.reverse_flow")
    assert rev.evidence["largest_decrease_milli"] == 300.0


def test_disabled_detector_does_not_run_and_bad_params_are_refused(world: World) -> None:
    from django.core.exceptions import ValidationError

    DetectorConfig.objects.create(key="scale.amount_mismatch", enabled=False)
    ingest_lines([txn(1, 1600)], source="t")
    run_detectors()
    assert not Alert.objects.filter(detector="scale.amount_mismatch").exists()
    with pytest.raises(ValidationError):
        DetectorConfig(key="scale.amount_mismatch", params={"tolerance_fen": -5}).full_clean()
    with pytest.raises(ValidationError):
        DetectorConfig(key="no.such", params={}).full_clean()


def test_lifecycle_and_scope(world: World) -> None:
    ingest_lines([txn(1, 1600)], source="t")
    run_detectors()
    a = Alert.objects.get()
    with pytest.raises(JiliangError):
        alert_decide(actor=world.users["futian_regulator"], alert_id=a.pk, status="dismissed")  # no reason
    alert_decide(actor=world.users["futian_regulator"], alert_id=a.pk, status="triaged")
    alert_decide(actor=world.users["futian_regulator"], alert_id=a.pk, status="confirmed")
    with pytest.raises(JiliangError):
        alert_decide(actor=world.users["futian_regulator"], alert_id=a.pk, status="new")
    # a closed alert lets the next finding open a new one
    ingest_lines([txn(2, 1700)], source="t")
    run_detectors()
    assert Alert.objects.filter(status="new").count() == 1


def test_cli_alerts_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from jiliang.cli import main

    ingest_lines([txn(1, 1600)], source="t")
    assert main(["detect"]) == 0
    capsys.readouterr()
    assert main(["alerts", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 1
    assert {"id", "device", "detector", "severity", "status", "opened_at", "evidence"} <= set(data[0])
    assert data[0]["device"] == "SC-F-1"


def test_api_alerts(world: World) -> None:
    ingest_lines([txn(1, 1600)], source="t")
    run_detectors()
    c = Client()
    c.force_login(world.users["futian_regulator"])
    body = c.get("/api/v1/alerts").json()
    assert body["count"] == 1 and body["items"][0]["device"] == "SC-F-1"
    aid = body["items"][0]["id"]
    r = c.patch(f"/api/v1/alerts/{aid}", {"status": "dismissed", "reason": "复秤确认为顾客误会"},
                content_type="application/json")
    assert r.status_code == 200 and r.json()["status"] == "dismissed"


def test_continuous_flow_is_followed_across_detection_runs(world: World) -> None:
    """A meter read hourly whose register never stops (连续流量): the run started in the first batch is kept in
    the detector's stored state and alarms once it has lasted 48 hours."""
    ingest_lines([reading(h + 1, h, 100 + 0.004 * h) for h in range(30)], source="t")
    run_detectors()
    assert not Alert.objects.filter(detector="meter.continuous_flow").exists()
    ingest_lines([reading(h + 1, h, 100 + 0.004 * h) for h in range(30, 60)], source="t")
    run_detectors()
    a = Alert.objects.get(detector="meter.continuous_flow")
    assert a.device.device_id == "WM-N-1" and a.severity == "warning"
    assert a.evidence["hours"] == 59.0 and a.evidence["readings"] == 60 and a.evidence["seqs"] == [1, 60]
    assert a.evidence["min_rate_milli_per_h"] == 4.0


def test_zero_drift_from_fair_scale_rechecks(world: World) -> None:
    loads = [312, 648, 1207, 483, 2096, 911]
    lines = [json.dumps({"kind": "scale.recheck", "place": "MKT-F", "device": "SC-F-1",
                         "ts": f"2026-11-{k + 1:02d}T09:00:00+08:00", "claimed_g": round((g + 30) / 5) * 5,
                         "actual_g": g}).encode() for k, g in enumerate(loads)]
    assert ingest_lines(lines, source="t").accepted == len(loads)
    run_detectors()
    a = Alert.objects.get(detector="scale.zero_drift")
    assert a.device.device_id == "SC-F-1" and a.severity == "critical" and 27 < a.evidence["offset_g"] < 33
