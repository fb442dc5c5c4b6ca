"""The simulated telemetry through ingestion and detection, judged against its ground truth."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from jiliang.simulation.city import generate_city
from jiliang.simulation.telemetry import TelemetrySpec, generate_telemetry

SEED = 20261123
AS_OF = dt.date(2026, 11, 23)


def test_deterministic_and_valid_json() -> None:
    city = generate_city("small", SEED, as_of=AS_OF)
    a, truth_a = generate_telemetry(city, seed=1)
    b, truth_b = generate_telemetry(city, seed=1)
    assert a == b and truth_a == truth_b
    assert all(isinstance(json.loads(line), dict) for line in a[:2000])


def test_new_faults_leave_the_other_devices_records_as_they_were() -> None:
    """Zero drift, hourly meters and leaks draw from streams of their own: with them switched off, every other
    device's records and every earlier fault are the same."""
    city = generate_city("small", SEED, as_of=AS_OF)
    spec = TelemetrySpec(days=5, zero_drift_share=0.2, hourly_meter_share=0.3, leak_share=0.5)
    lines, truth = generate_telemetry(city, seed=4, spec=spec)
    off = TelemetrySpec(days=5, zero_drift_share=0.0, hourly_meter_share=0.0)
    plain, plain_truth = generate_telemetry(city, seed=4, spec=off)
    changed = set(truth.zero_drift_scales) | truth.hourly_meters
    assert changed and truth.leaking_meters
    device = lambda line: json.loads(line)["device"]  # noqa: E731
    assert [x for x in lines if device(x) not in changed] == [x for x in plain if device(x) not in changed]
    for key in ("cheating_scales", "drifting_scales", "padding_scales", "charger_error_pct", "stuck_meters",
                "reversed_meters"):
        assert getattr(truth, key) == getattr(plain_truth, key)
    assert not plain_truth.zero_drift_scales and not plain_truth.hourly_meters


def _records(lines: list[str], kind: str) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for line in lines:
        rec = json.loads(line)
        if rec["kind"] == kind:
            out.setdefault(str(rec["device"]), []).append(rec)
    return out


def test_zero_drift_ground_truth_matches_the_rechecks() -> None:
    """After its onset a zero-drift scale shows true weight + offset, rounded to 5 g; before it, the true
    weight rounded; the offsets are 15–60 g, mostly positive."""
    city = generate_city("small", SEED, as_of=AS_OF)
    lines, truth = generate_telemetry(city, seed=5, spec=TelemetrySpec(days=10, zero_drift_share=0.3))
    assert len(truth.zero_drift_scales) >= 5
    start = dt.datetime.combine(AS_OF - dt.timedelta(days=10), dt.time(0), tzinfo=dt.timezone(dt.timedelta(hours=8)))
    rechecks = _records(lines, "scale.recheck")
    for dev, z in truth.zero_drift_scales.items():
        assert 15 <= abs(z["offset_g"]) <= 60 and dev not in truth.cheating_scales | truth.drifting_scales
        for r in rechecks.get(dev, []):
            day = (dt.datetime.fromisoformat(str(r["ts"])) - start).days
            offset = z["offset_g"] if day >= z["from_day"] else 0.0
            assert abs(int(r["claimed_g"]) - int(r["actual_g"]) - offset) <= 2.5  # type: ignore[call-overload]
    assert sum(z["offset_g"] > 0 for z in truth.zero_drift_scales.values()) > len(truth.zero_drift_scales) / 2


def test_hourly_meters_and_leaks_match_the_ground_truth() -> None:
    """Hourly meters read 24 times a day; after a leak's onset no hour is without consumption, while every
    sound hourly meter has hours without any each night."""
    city = generate_city("small", SEED, as_of=AS_OF)
    spec = TelemetrySpec(days=6, hourly_meter_share=0.5, leak_share=0.3)
    lines, truth = generate_telemetry(city, seed=6, spec=spec)
    readings = _records(lines, "meter.reading")
    assert truth.leaking_meters and truth.hourly_meters - set(truth.leaking_meters)
    for dev in truth.hourly_meters:
        rows = readings[dev]
        assert len(rows) == 24 * spec.days and [r["seq"] for r in rows] == list(range(1, 24 * spec.days + 1))
        used = np.diff([round(float(r["register"]) * 1000) for r in rows])  # type: ignore[arg-type]
        onset = truth.leaking_meters.get(dev)
        if onset is not None:
            assert 2 <= truth.leak_l_per_h[dev] <= 20
            assert (used[onset * 24:] > 0).all()  # interval k ends at reading k + 1: from 01:00 of the onset day
        elif dev not in truth.stuck_meters and dev not in truth.reversed_meters:
            nights = used[: 24 * spec.days - 1].reshape(-1)[[h for h in range(24 * spec.days - 1) if h % 24 < 5]]
            assert (nights == 0).mean() > 0.5
    daily = set(readings) - truth.hourly_meters
    assert daily and all(len(readings[d]) == spec.days for d in daily)


@pytest.mark.django_db
def test_detectors_find_the_injected_faults_and_nothing_else() -> None:
    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.estimates import charger_estimates
    from jiliang.monitoring.ingest import ingest_lines
    from jiliang.monitoring.models import Alert
    from jiliang.simulation.demo import build_demo

    build_demo(scale="small", seed=SEED, fresh=True, progress=False, as_of=AS_OF, with_telemetry=False)
    city = generate_city("small", SEED, as_of=AS_OF)
    spec = TelemetrySpec(days=7, stuck_share=0.03, reversed_share=0.03, padding_share=0.03, cheat_share=0.1,
                         charger_sessions_per_day=12, zero_drift_share=0.1, hourly_meter_share=0.3, leak_share=0.3)
    lines, truth = generate_telemetry(city, seed=3, spec=spec)
    report = ingest_lines(lines, source="sim")
    assert report.rejected == 0, report.rejections[:3]
    assert report.accepted == len(lines)
    run_detectors()
    alerts = {(a.detector, a.device.device_id) for a in Alert.objects.select_related("device")}
    flagged = lambda key: {d for k, d in alerts if k == key}  # noqa: E731
    assert flagged("meter.reverse_flow") == set(truth.reversed_meters)
    assert flagged("meter.stuck_register") == set(truth.stuck_meters)
    assert flagged("scale.amount_mismatch") <= truth.padding_scales
    assert flagged("charger.register_continuity") == truth.backwards_chargers
    assert not flagged("meter.implausible_jump")
    cheaters = {d for d, c in truth.cheating_scales.items() if c["inflation"] >= 0.05}
    assert cheaters <= flagged("scale.recheck_shortfall")
    # a positive zero offset is a shortfall too
    assert flagged("scale.recheck_shortfall") <= set(truth.cheating_scales) | set(truth.drifting_scales) | {
        d for d, z in truth.zero_drift_scales.items() if z["offset_g"] > 0}
    assert truth.zero_drift_scales and truth.leaking_meters
    assert flagged("scale.zero_drift") and flagged("scale.zero_drift") <= set(truth.zero_drift_scales)
    assert flagged("meter.continuous_flow") == set(truth.leaking_meters)
    est = {r["device"]: r for r in charger_estimates()}
    errs = np.array([est[d]["error_pct"] - truth.charger_error_pct[d] for d in est if est[d]["sessions"] >= 50])
    assert errs.size and np.abs(errs).mean() < 0.6


@pytest.mark.django_db
def test_a_fresh_demo_rebuild_starts_from_empty_telemetry_and_alerts() -> None:
    from jiliang.monitoring.models import Alert, MeterReading
    from jiliang.simulation.demo import build_demo

    first = build_demo(scale="small", seed=SEED, fresh=True, progress=False, as_of=AS_OF)
    readings, alerts = MeterReading.objects.count(), Alert.objects.count()
    assert readings > 0
    second = build_demo(scale="small", seed=SEED, fresh=True, progress=False, as_of=AS_OF)
    assert MeterReading.objects.count() == readings and Alert.objects.count() == alerts
    assert first.telemetry["records"] == second.telemetry["records"] == readings + sum(
        m.objects.count() for m in _other_telemetry())


def _other_telemetry() -> list[type]:
    from jiliang.monitoring import models as mon

    return [mon.ScaleTxn, mon.ScaleEvent, mon.ScaleRecheck, mon.ChargerSession, mon.DispenserSale,
            mon.TankReading, mon.TankDelivery]
