"""The simulated telemetry through ingestion and detection, judged against its ground truth."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from jiliang.simulation.city import generate_city
from jiliang.simulation.telemetry import TelemetrySpec, generate_telemetry

SEED = 20261123
AS_OF = dt.date(2026, 11, 23)


def test_deterministic_and_valid_json() -> None:
    import json

    city = generate_city("small", SEED, as_of=AS_OF)
    a, truth_a = generate_telemetry(city, seed=1)
    b, truth_b = generate_telemetry(city, seed=1)
    assert a == b and truth_a == truth_b
    assert all(isinstance(json.loads(line), dict) for line in a[:2000])


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
                         charger_sessions_per_day=12)
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
    assert flagged("scale.recheck_shortfall") <= set(truth.cheating_scales) | set(truth.drifting_scales)
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
