"""jiliang estimate dispensers over stored telemetry: the leaking tank and the drifting nozzle are found."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from jiliang.monitoring.fuel import dispenser_estimates
from jiliang.monitoring.ingest import ingest_lines
from jiliang.simulation.city import generate_city
from jiliang.simulation.fuel import FuelSpec, generate_fuel

pytestmark = pytest.mark.django_db
SEED = 20261123
AS_OF = dt.date(2026, 11, 23)
SPEC_FIELDS = {"device", "error_pct", "ci95_pct", "sessions", "exceeds_mpe"}


def test_small_city_leak_and_drift_found_against_the_ground_truth() -> None:
    from jiliang.simulation.demo import build_demo

    build_demo(scale="small", seed=SEED, fresh=True, progress=False, as_of=AS_OF, with_telemetry=False)
    city = generate_city("small", SEED, as_of=AS_OF)
    spec = FuelSpec(drifting_nozzles=1, drift_from_day=14, drift_pct=0.4, drift_extra_pct=0.0, leaking_tanks=1)
    lines, truth = generate_fuel(city, seed=7, days=21, spec=spec)
    report = ingest_lines(lines, source="sim-fuel")
    assert report.rejected == 0, report.rejections[:3]
    assert report.accepted == len(lines)
    rows = dispenser_estimates()
    json.dumps(rows, allow_nan=False)  # null, never NaN
    assert rows and all(set(r) >= SPEC_FIELDS for r in rows)
    assert {r["device"] for r in rows} == set(truth.nozzle_error_pct)
    assert all(r["mpe_pct"] == 0.3 and r["sessions"] > 100 for r in rows)
    leaking = {f"{r['place']}/{r['tank']}" for r in rows if r["leak_detected"]}
    assert leaking == set(truth.leaking_tanks)
    for r in rows:
        assert r["leak_l_per_h"] is not None and r["leak_ci95"] is not None and 1 < r["tank_noise_sd_l"] < 5
        assert r["tank_reading_minutes"] == 60.0  # the simulator's hourly gauge
        if f"{r['place']}/{r['tank']}" in truth.leaking_tanks:
            assert abs(r["leak_l_per_h"] - 0.38) < 2 * r["leak_ci95"] + 0.05
    (drifting,) = truth.drifting_nozzles
    flagged = {r["device"] for r in rows if r["drift_flagged"]}
    assert drifting in flagged and len(flagged) <= 3
    by_dev = {r["device"]: r for r in rows}
    assert by_dev[drifting]["drift_since"].startswith("2026-11-16")  # day 14 of the 21 from 2026-11-02
    for dev, r in by_dev.items():
        assert abs(r["error_pct"] - truth.error_pct_at(dev, 21)) < 0.15, (dev, r)
        # exceeds_mpe only when the whole interval is outside ±0.3 %
        assert r["exceeds_mpe"] == (abs(r["error_pct"]) - r["ci95_pct"] > 0.3)
    # a shorter window: the drift is then older than the record's first day and the fit still works
    week = dispenser_estimates(window_days=5)
    assert {r["device"] for r in week} == set(truth.nozzle_error_pct)


def test_nothing_stored_gives_nothing() -> None:
    assert dispenser_estimates() == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window_days"):
        dispenser_estimates(window_days=1)
    with pytest.raises(ValueError, match="drift_days"):
        dispenser_estimates(drift_days=0)


def test_estimate_dispensers_command_with_nothing_stored(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from jiliang.cli import main

    assert main(["estimate", "dispensers", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == []
