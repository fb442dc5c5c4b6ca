"""jiliang estimate chargers over stored sessions: the over-registering charger is found."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jiliang.monitoring.estimates import charger_estimates
from jiliang.monitoring.ingest import ingest_lines
from jiliang.registry.models import Instrument, InstrumentModel, Place
from jiliang.verification.services import verification_record
from tests.world import World

pytestmark = pytest.mark.django_db


def test_estimate_finds_the_faulty_charger(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    op = world.orgs["mo_n"]
    cs = Place.objects.create(key="CS-1", name="充电站", kind="charging_station", region_id="440305", operator=op)
    model = InstrumentModel.objects.create(maker=world.orgs["maker"], name="EV-7", instrument_type_id="ev_charger_dc",
                                           accuracy_class="1")
    truth = [0.0, 0.2, -0.3, 3.0, 0.1, -0.2]
    for i in range(len(truth)):
        Instrument.objects.create(device_id=f"EV-{i}", serial=f"E{i}", model=model, instrument_type_id="ev_charger_dc",
                                  maker=world.orgs["maker"], owner=op, place=cs, region_id="440305",
                                  status="in_service", accuracy_class="1")
    verification_record(actor=world.users["admin"], device_id="EV-0", kind="periodic", date="2026-10-01",
                        institution_uscc=world.orgs["inst"].uscc, points=[{"point": "Imax", "error_pct": 0.0}])
    rng = np.random.default_rng(3)
    vehicles = rng.normal(0, 0.01, 60)
    lines = []
    for seq in range(1800):
        c = int(rng.integers(0, len(truth)))
        v = int(rng.integers(0, 60))
        bms = int(rng.integers(8000, 60000))
        energy = round(bms * np.exp(np.log1p(truth[c] / 100) - vehicles[v] + rng.normal(0, 0.02)))
        lines.append(json.dumps({"kind": "charger.session", "device": f"EV-{c}", "seq": seq, "session_id": f"s{seq}",
                                 "start_ts": "2026-11-01T08:00:00+08:00", "end_ts": "2026-11-01T09:00:00+08:00",
                                 "meter_start_wh": 0, "meter_end_wh": energy, "energy_wh": energy,
                                 "vehicle": f"veh-{v}", "bms_energy_wh": bms}).encode())
    assert ingest_lines(lines, source="t").accepted == 1800
    est = {r["device"]: r for r in charger_estimates()}
    assert set(est) == {f"EV-{i}" for i in range(6)} and est["EV-0"]["anchored"]
    for i, t in enumerate(truth):
        assert abs(est[f"EV-{i}"]["error_pct"] - t) < 0.5, (i, est[f"EV-{i}"])
    assert [d for d, r in est.items() if r["exceeds_mpe"]] == ["EV-3"]
    from jiliang.cli import main

    assert main(["estimate", "chargers", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {"device", "error_pct", "ci95_pct", "sessions", "exceeds_mpe"} <= set(out[0])
