"""Simulated fuel station telemetry (加油站): valid SPEC 3.2 records, and the estimator finds its faults."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from jiliang.engine.estimators.dispensers import estimate_fleet
from jiliang.simulation.city import generate_city
from jiliang.simulation.fuel import FuelSpec, dumps_truth, generate_fuel, simulate_fuel

SEED = 20261123
AS_OF = dt.date(2026, 11, 23)


def test_deterministic_valid_records_and_truth() -> None:
    city = generate_city("small", SEED, as_of=AS_OF)
    a, truth_a = generate_fuel(city, seed=1, days=3)
    b, truth_b = generate_fuel(city, seed=1, days=3)
    assert a == b and truth_a == truth_b
    records = [json.loads(line) for line in a]
    kinds = {r["kind"] for r in records}
    assert {"dispenser.sale", "tank.reading"} <= kinds <= {"dispenser.sale", "tank.reading", "tank.delivery"}
    nozzles = {i["device_id"]: i for i in city.instruments if i["instrument_type"] == "fuel_dispenser"}
    by_device: dict[str, list[dict[str, object]]] = {}
    for r in records:
        assert str(r["ts"]).endswith("+08:00") and dt.datetime.fromisoformat(str(r["ts"])).tzinfo is not None
        if r["kind"] == "dispenser.sale":
            assert nozzles[r["device"]]["status"] in ("in_service", "installed")
            assert r["volume_ml"] > 0 and r["amount_fen"] > 0
            by_device.setdefault(r["device"], []).append(r)
        else:
            assert any(i["place_key"] == r["place"] and i["tank"] == r["tank"] for i in nozzles.values())
    for sales in by_device.values():  # seq 1, 2, …; the totalizer runs on by each sale's volume
        assert [s["seq"] for s in sales] == list(range(1, len(sales) + 1))
        tot = np.array([s["totalizer_ml"] for s in sales])
        assert (np.diff(tot) == np.array([s["volume_ml"] for s in sales])[1:]).all()
    readings = [r for r in records if r["kind"] == "tank.reading" and r["place"] == records[0]["place"]
                and r["tank"] == records[0]["tank"]]
    assert len(readings) == 3 * 24 + 1  # hourly, both ends included
    assert json.loads(dumps_truth(truth_a))["leaking_tanks"]
    assert set(by_device) <= set(truth_a.nozzle_error_pct)


def test_faults_in_the_truth_and_drifts_on_different_tanks() -> None:
    city = generate_city("city", SEED, as_of=AS_OF)
    data, truth = simulate_fuel(city, seed=2, spec=FuelSpec(days=10, drifting_nozzles=8, leaking_tanks=3))
    assert len(truth.drifting_nozzles) == 8 and len(truth.leaking_tanks) == 3
    tanks = {int(data.nozzle_tank[data.devices.index(d)]) for d in truth.drifting_nozzles}
    assert len(tanks) == 8
    for d, drift in truth.drifting_nozzles.items():
        assert 0.3 <= abs(drift["drift_pct"]) <= 0.5 and 3 <= drift["from_day"] <= 3 + 1
        assert truth.error_pct_at(d, 9.5) == truth.nozzle_error_pct[d] + drift["drift_pct"]
    errs = np.array(list(truth.nozzle_error_pct.values()))
    assert abs(errs.std() - 0.05) < 0.01  # N(0, 0.05 %)


def test_the_estimator_finds_the_leak_and_the_drift() -> None:
    city = generate_city("small", SEED, as_of=AS_OF)
    spec = FuelSpec(days=30, drifting_nozzles=1, drift_from_day=20, drift_pct=0.4, drift_extra_pct=0.0,
                    leaking_tanks=1)
    data, truth = simulate_fuel(city, seed=5, spec=spec)
    est = estimate_fleet(nozzle_tank=data.nozzle_tank, reading_tank=data.reading_tank,
                         reading_h=data.reading_s / 3600, gauge_l=data.reading_ml / 1000,
                         temp_c=data.reading_temp_c, delivery_tank=data.delivery_tank,
                         delivery_h=data.delivery_s / 3600, sale_nozzle=data.sale_nozzle, sale_h=data.sale_s / 3600,
                         sale_l=data.sale_ml / 1000)
    tank_of = [int(data.nozzle_tank[e.nozzles[0]]) for e in est]
    leaking = {data.tank_key(t) for t, e in zip(tank_of, est, strict=True) if e.leak_detected()}
    assert leaking == set(truth.leaking_tanks)
    (drifting,) = truth.drifting_nozzles
    flagged = {data.devices[int(n)] for e in est for j, n in enumerate(e.nozzles) if e.drift_flagged[j]}
    assert drifting in flagged and len(flagged) <= 3
    # each nozzle's error within 3.5 of its standard errors (and 0.3 %) of the truth; most within 0.1 %
    off = []
    for e in est:
        for j, n in enumerate(e.nozzles):
            dev = data.devices[int(n)]
            miss = abs(e.error_pct[j] - truth.error_pct_at(dev, 30))
            assert miss < min(0.3, 3.5 * e.error_se_pct[j]), (dev, e.error_pct[j], e.error_se_pct[j])
            off.append(miss)
    assert np.median(off) < 0.1


def test_quarter_hour_readings_and_bad_specs() -> None:
    city = generate_city("small", SEED, as_of=AS_OF)
    data, _truth = simulate_fuel(city, seed=3, spec=FuelSpec(days=2, reading_minutes=15))
    assert np.unique(np.diff(data.reading_s[data.reading_tank == 0])).tolist() == [900.0]
    assert not np.isin(data.sale_s, data.reading_s).any()  # no sale at the second of a reading
    with pytest.raises(ValueError, match="reading_minutes"):
        simulate_fuel(city, seed=3, spec=FuelSpec(reading_minutes=1))
    with pytest.raises(ValueError, match="days"):
        generate_fuel(city, seed=3, days=0)


@pytest.mark.django_db
def test_demo_includes_fuel_telemetry_and_its_alerts() -> None:
    """``jiliang demo`` ingests the fuel telemetry and runs the fuel alerts: the leaking tank and the drifting
    nozzle of the ground truth are alerted, nothing else."""
    from jiliang.monitoring.models import Alert, DispenserSale
    from jiliang.simulation.demo import DEMO_FUEL, build_demo

    seed, as_of = 20261123, dt.date(2026, 11, 23)
    summary = build_demo(scale="small", seed=seed, fresh=True, progress=False, as_of=as_of)
    city = generate_city("small", seed, as_of=as_of)
    lines, truth = generate_fuel(city, seed=seed, spec=DEMO_FUEL)
    assert summary.telemetry["fuel_records"] == len(lines) and DispenserSale.objects.exists()
    leaks = {f"{a.evidence['place']}/{a.evidence['tank']}" for a in Alert.objects.filter(detector="fuel.tank_leak")}
    drifts = set(Alert.objects.filter(detector="fuel.nozzle_drift").values_list("device__device_id", flat=True))
    assert leaks == set(truth.leaking_tanks) and drifts == set(truth.drifting_nozzles)
    assert summary.telemetry["fuel_alerts"] == len(leaks) + len(drifts)
