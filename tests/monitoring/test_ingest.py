"""Telemetry ingestion: every bad line reported with its reason, every good line stored once."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from jiliang.accounts.services import api_token_create
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import (
    ChargerSession,
    DispenserSale,
    MeterReading,
    Quarantine,
    ScaleEvent,
    ScaleRecheck,
    ScaleTxn,
    TankDelivery,
    TankReading,
)
from jiliang.registry.models import Instrument, InstrumentModel, OrganizationKind, Place
from tests.world import World

pytestmark = pytest.mark.django_db
T = "2026-11-01T08:00:00+08:00"


@pytest.fixture
def fleet(world: World) -> World:
    """Adds a charger and a fuel station with two nozzles on tank T1 to the world."""
    op = world.orgs["mo_n"]
    OrganizationKind.objects.create(organization=op, kind="fuel_retailer")
    station = Place.objects.create(key="FS-N", name="南山加油站", kind="fuel_station", region_id="440305", operator=op)
    cs = Place.objects.create(key="CS-N", name="南山充电站", kind="charging_station", region_id="440305", operator=op)
    maker = world.orgs["maker"]
    disp = InstrumentModel.objects.create(maker=maker, name="FD-1", instrument_type_id="fuel_dispenser",
                                          accuracy_class="0.3")
    chg = InstrumentModel.objects.create(maker=maker, name="EV-7", instrument_type_id="ev_charger_ac",
                                         accuracy_class="2")
    for i in (1, 2):
        Instrument.objects.create(device_id=f"FD-N-{i}", serial=f"FD{i}", model=disp,
                                  instrument_type_id="fuel_dispenser", maker=maker, owner=op, place=station,
                                  region_id="440305", status="in_service", tank="T1")
    Instrument.objects.create(device_id="EV-N-1", serial="EV1", model=chg, instrument_type_id="ev_charger_ac",
                              maker=maker, owner=op, place=cs, region_id="440305", status="in_service")
    return world


GOOD = [
    {"kind": "scale.txn", "device": "SC-F-1", "ts": T, "seq": 1, "net_g": 512, "tare_g": 10,
     "unit_price_fen_per_kg": 1600, "amount_fen": 819},
    {"kind": "scale.event", "device": "SC-F-1", "ts": T, "seq": 2, "event": "calibration", "sw_id": "V1",
     "sw_hash": "ab12"},
    {"kind": "scale.recheck", "place": "MKT-F", "ts": T, "device": "SC-F-1", "claimed_g": 500, "actual_g": 470},
    {"kind": "charger.session", "device": "EV-N-1", "seq": 1, "session_id": "S1", "start_ts": T,
     "end_ts": "2026-11-01T09:00:00+08:00", "meter_start_wh": 1000, "meter_end_wh": 8000, "energy_wh": 7000,
     "vehicle": "veh-9f2c", "bms_energy_wh": 6900, "amount_fen": 840},
    {"kind": "dispenser.sale", "device": "FD-N-1", "ts": T, "seq": 1, "volume_ml": 40000, "amount_fen": 31200,
     "totalizer_ml": 123440000},
    {"kind": "tank.reading", "place": "FS-N", "tank": "T1", "ts": T, "volume_ml": 20000000, "temp_c": 24.5},
    {"kind": "tank.delivery", "place": "FS-N", "tank": "T1", "ts": T, "volume_ml": 10000000},
    {"kind": "meter.reading", "device": "WM-N-1", "ts": T, "seq": 1, "register": 1234.567, "flags": ["reverse"]},
]


def lines(records: list[object]) -> list[bytes]:
    return [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]


def test_every_kind_is_stored_with_its_fields(fleet: World) -> None:
    rep = ingest_lines(lines(GOOD), source="test")
    assert (rep.accepted, rep.rejected, rep.duplicates) == (8, 0, 0), rep.rejections
    for model in (ScaleTxn, ScaleEvent, ScaleRecheck, ChargerSession, DispenserSale, TankReading, TankDelivery,
                  MeterReading):
        assert model.objects.count() == 1, model
    m = MeterReading.objects.get()
    assert m.register_milli == 1234567 and m.flags == 1 and m.device_id == fleet.instruments["I_W"].pk
    t = ScaleTxn.objects.get()
    assert t.ts.isoformat() == "2026-11-01T00:00:00+00:00" and t.amount_fen == 819
    assert ChargerSession.objects.get().bms_energy_wh == 6900


def test_bad_lines_are_reported_and_quarantined_good_ones_stored_once(fleet: World) -> None:
    mixed: list[object] = [
        GOOD[0],
        b'{"kind": "scale.txn", "device": ',                                        # 2 malformed JSON
        {"kind": "scale.weigh", "device": "SC-F-1"},                                # 3 unknown kind
        {k: v for k, v in GOOD[0].items() if k != "amount_fen"} | {"seq": 9},       # 4 missing field
        GOOD[0] | {"seq": 10, "net_g": "512"},                                      # 5 wrong type
        GOOD[0] | {"seq": 11, "device": "SC-NOPE"},                                 # 6 unregistered device
        GOOD[7] | {"device": "SC-F-1"},                                             # 7 wrong instrument type
        GOOD[0],                                                                    # 8 duplicate of line 1
        GOOD[0] | {"seq": 12, "ts": "2026-11-01T08:00:00"},                         # 9 no offset
        GOOD[5] | {"tank": "T9"},                                                   # 10 unknown tank
        b"[1, 2]",                                                                  # 11 not an object
        GOOD[7] | {"seq": 2, "register": 1.2345},                                   # 12 too many decimals
        b"",                                                                        # 13 blank: skipped
        GOOD[7] | {"seq": 3},                                                       # 14 good
    ]
    rep = ingest_lines(lines(mixed), source="mixed.ndjson")
    assert rep.accepted == 2 and rep.duplicates == 1 and rep.rejected == 10
    got = {(ln, f) for ln, f, _ in rep.rejections}
    assert got == {(2, None), (3, "kind"), (4, "amount_fen"), (5, "net_g"), (6, "device"), (7, "device"),
                   (9, "ts"), (10, "tank"), (11, None), (12, "register")}
    reasons = {ln: r for ln, _, r in rep.rejections}
    assert "malformed JSON" in reasons[2] and "unknown kind" in reasons[3] and "missing field" in reasons[4]
    assert "whole number" in reasons[5] and "not registered" in reasons[6] and "offset" in reasons[9]
    q = Quarantine.objects.order_by("line_no")
    assert q.count() == 10 and q.first().source == "mixed.ndjson" and '"device": ' in q.first().raw
    assert ScaleTxn.objects.count() == 1 and MeterReading.objects.count() == 1


def test_resending_after_a_crash_duplicates_nothing(fleet: World) -> None:
    ingest_lines(lines(GOOD[:4]), source="a", batch_size=2)
    rep = ingest_lines(lines(GOOD), source="a", batch_size=3)   # the sender retries everything
    assert (rep.accepted, rep.duplicates) == (4, 4)
    assert sum(m.objects.count() for m in (ScaleTxn, ScaleEvent, ScaleRecheck, ChargerSession, DispenserSale,
                                           TankReading, TankDelivery, MeterReading)) == 8


def test_api_upload_with_a_token_and_ownership(fleet: World) -> None:
    _, raw = api_token_create(actor=fleet.users["admin"], name="station platform", role="market_entity",
                              organization_id=fleet.orgs["mo_n"].pk)
    c = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    body = b"\n".join(lines([GOOD[4], GOOD[5], GOOD[0]]))
    r = c.post("/api/v1/telemetry", body, content_type="application/x-ndjson")
    assert r.status_code == 200
    data = r.json()
    assert (data["accepted"], data["rejected"]) == (2, 1)
    assert data["rejections"][0]["line"] == 3 and "does not belong" in data["rejections"][0]["reason"]
    assert Client().post("/api/v1/telemetry", body, content_type="application/x-ndjson").status_code == 401


def test_cli_ingest_gzip_and_stdin(fleet: World, tmp_path: Path) -> None:
    """The command on a real file: here in-process against the test database (the subprocess variant would
    not see the test transaction)."""
    from jiliang.cli import main

    f = tmp_path / "t.ndjson.gz"
    with gzip.open(f, "wb") as fh:
        fh.write(b"\n".join(lines(GOOD)) + b"\n{oops\n")
    assert main(["ingest", str(f)]) == 0
    assert MeterReading.objects.count() == 1 and Quarantine.objects.get().line_no == 9
    assert main(["ingest", str(tmp_path / "none.ndjson")]) == 2


def test_cli_ingest_subprocess_on_a_fresh_database(tmp_path: Path) -> None:
    db = tmp_path / "fresh.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "JILIANG_HOME": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    r = subprocess.run([sys.executable, "-m", "jiliang.cli", "ingest", "-"], input=b'{"kind":"meter.reading"}\n',
                       capture_output=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert b"1 lines: 0 accepted, 0 duplicates (already stored), 1 rejected" in r.stdout
    assert b"line 1, field device: missing field" in r.stderr
