"""Fuel alerts (``fuel.tank_leak``, ``fuel.nozzle_drift``) from stored telemetry against the simulator's ground
truth: the leaking tank and the drifting nozzle are alerted, healthy tanks and nozzles stay quiet, the evidence
has the shape the alert page charts, and re-running changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import override_settings

from jiliang.core.errors import JiliangError
from jiliang.engine.estimators.dispensers import DRIFT_Z
from jiliang.monitoring.fuel import DRIFT, LEAK, fuel_alert_params, fuel_alerts_run
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert
from jiliang.monitoring.selectors import alert_evidence
from jiliang.registry.models import Instrument
from jiliang.simulation.city import generate_city
from jiliang.simulation.fuel import FuelSpec, FuelTruth, generate_fuel

pytestmark = pytest.mark.django_db
SEED = 20261123
AS_OF = dt.date(2026, 11, 23)


@pytest.fixture
def fuel_city() -> FuelTruth:
    from jiliang.simulation.demo import build_demo

    build_demo(scale="small", seed=SEED, fresh=True, progress=False, as_of=AS_OF, with_telemetry=False)
    city = generate_city("small", SEED, as_of=AS_OF)
    spec = FuelSpec(drifting_nozzles=1, drift_from_day=12, drift_pct=0.4, drift_extra_pct=0.0, leaking_tanks=1)
    lines, truth = generate_fuel(city, seed=7, days=21, spec=spec)
    assert ingest_lines(lines, source="sim-fuel").rejected == 0
    return truth


def _tank_of(device: str) -> tuple[str, str]:
    inst = Instrument.objects.select_related("place").get(device_id=device)
    return inst.place.key, inst.tank


def test_leak_and_drift_alerted_healthy_quiet(fuel_city: FuelTruth) -> None:
    truth = fuel_city
    report = fuel_alerts_run()
    assert report.tanks == len(truth.tanks) and report.opened == report.findings[LEAK] + report.findings[DRIFT]
    leaks = list(Alert.objects.filter(detector=LEAK).select_related("device"))
    assert {f"{a.evidence['place']}/{a.evidence['tank']}" for a in leaks} == set(truth.leaking_tanks)
    (leak,) = leaks
    tank = truth.tanks[f"{leak.evidence['place']}/{leak.evidence['tank']}"]
    # attached to the tank's first nozzle; the evidence names all of them
    assert leak.device.device_id == min(tank["nozzles"]) and leak.evidence["nozzles"] == sorted(tank["nozzles"])
    assert leak.owner_id == leak.device.owner_id and leak.region_id == leak.device.region_id
    ev = leak.evidence
    assert abs(ev["leak_l_per_h"] - 0.38) < 2 * ev["leak_ci95"] + 0.05 and ev["leak_lower_l_per_h"] > 0
    assert ev["threshold_l_per_h"] == 0.19 and ev["episode"] == "leak"
    assert ev["reading_minutes"] == 60.0  # the simulator's hourly gauge: shown beside the leak
    facts = dict(alert_evidence(leak).facts)
    assert facts["液位仪读数间隔（分钟）"] == "60.0"
    # the balance chart: [local time, litres] points falling along the leak line over the window
    assert 100 <= len(ev["balance"]) <= 240 and all(len(p) == 2 for p in ev["balance"])
    assert ev["balance"][0][0] >= ev["window_from"] and ev["balance"][-1][0] <= ev["window_to"]
    assert ev["balance"][-1][1] < -100  # 0.38 L/h × 21 days ≈ 190 L lost
    assert len(ev["leak_line"]) == 2 and ev["leak_line"][0][1] == 0.0
    assert abs(ev["leak_line"][1][1] - ev["balance"][-1][1]) < 30

    drifts = {a.device.device_id: a for a in Alert.objects.filter(detector=DRIFT).select_related("device")}
    (drifting,) = truth.drifting_nozzles
    assert drifting in drifts
    # every other alerted nozzle is a co-suspect on the same tank (the attribution names up to three)
    for dev, a in drifts.items():
        if dev != drifting:
            assert _tank_of(dev) == _tank_of(drifting) and "drift" in a.evidence["reasons"], (dev, a.evidence)
    assert len(drifts) <= 3
    ev = drifts[drifting].evidence
    size = truth.drifting_nozzles[drifting]["drift_pct"]  # ±0.4 %
    assert "drift" in ev["reasons"] and abs(ev["drift_pct"] - size) < 0.15
    assert ev["drift_since"].startswith("2026-11-14") and ev["episode"] == f"drift:{ev['drift_since']}"
    # the per-day apparent error (noisy: a few litres of gauge noise on ~800 L a day) steps by about the drift
    days = {d: e for d, e, _v in ev["periods"] if e is not None}
    assert len(ev["periods"]) >= 20 and all(len(p) == 3 for p in ev["periods"])
    before = [e for d, e in days.items() if d < "2026-11-14"]
    after = [e for d, e in days.items() if d > "2026-11-14"]
    step = sum(after) / len(after) - sum(before) / len(before)
    assert step * size > 0 and abs(step - size) < 0.3, (step, size)
    json.dumps([a.evidence for a in Alert.objects.all()], allow_nan=False)


def test_rerun_is_idempotent_and_decided_episodes_stay_closed(fuel_city: FuelTruth) -> None:
    first = fuel_alerts_run()
    alerts = {a.pk: (a.occurrences, a.updated_at) for a in Alert.objects.all()}
    again = fuel_alerts_run()
    assert again.opened == 0 and again.updated == 0 and again.unchanged == first.opened
    assert {a.pk: (a.occurrences, a.updated_at) for a in Alert.objects.all()} == alerts
    # dismissed: the same episode does not reopen; a leak confirmed likewise
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.monitoring.detection import alert_decide

    for a in Alert.objects.all():
        alert_decide(actor=SystemPrincipal("system:test"), alert_id=a.pk, status="dismissed", reason="checked")
    third = fuel_alerts_run()
    assert third.opened == 0 and third.suppressed == first.opened
    assert Alert.objects.count() == len(alerts)


def test_quiet_when_nothing_is_wrong() -> None:
    from jiliang.simulation.demo import build_demo

    build_demo(scale="small", seed=SEED, fresh=True, progress=False, as_of=AS_OF, with_telemetry=False)
    city = generate_city("small", SEED, as_of=AS_OF)
    lines, _truth = generate_fuel(city, seed=11, days=21, spec=FuelSpec(drifting_nozzles=0, leaking_tanks=0))
    ingest_lines(lines, source="sim-fuel")
    report = fuel_alerts_run()
    assert report.tanks > 0 and report.opened == 0 and not Alert.objects.exists()


def test_nothing_stored_does_nothing() -> None:
    assert fuel_alerts_run().opened == 0


@pytest.mark.parametrize(("overrides", "field"), [
    ({"leak_alpha": 0}, "leak_alpha"), ({"window_days": 2}, "window_days"), ({"window_days": 7.5}, "window_days"),
    ({"drift_z": "high"}, "drift_z"), ({"mpe_alerts": 1}, "mpe_alerts"), ({"nonsense": 1}, "nonsense")])
def test_configuration_is_validated(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(JiliangError) as exc:
        fuel_alert_params(overrides)
    assert exc.value.code == "validation_failed" and field in {d.field for d in exc.value.details}


def test_configuration_from_settings() -> None:
    with override_settings(JILIANG_FUEL_ALERTS={"leak_threshold_l_per_h": 0.5, "window_days": 14}):
        p = fuel_alert_params()
    assert p.leak_threshold_l_per_h == 0.5 and p.window_days == 14 and p.drift_z == DRIFT_Z
    with override_settings(JILIANG_FUEL_ALERTS={"drift_z": -1}), pytest.raises(JiliangError):
        fuel_alerts_run()


def test_alert_pages_chart_the_fuel_evidence(fuel_city: FuelTruth) -> None:
    from django.test import Client

    from jiliang.accounts.models import User

    fuel_alerts_run()
    c = Client()
    c.force_login(User.objects.get(username="admin"))
    for detector, title, chart in ((LEAK, "油罐疑似渗漏（液位仪对账）", "油罐账差：液位仪读数 − 账面库存"),
                                   (DRIFT, "加油枪计量误差漂移或超差", "加油枪逐日表观误差")):
        a = Alert.objects.filter(detector=detector).first()
        assert a is not None
        page = c.get(f"/alerts/{a.pk}/").content.decode()
        assert title in page and chart in page and 'id="alert-chart-data"' in page, detector
        assert detector in c.get(f"/alerts/?detector={detector}").content.decode()
