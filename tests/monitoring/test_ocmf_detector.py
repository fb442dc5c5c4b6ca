"""Charger sessions carrying real OCMF records: a tampered one raises an alert, a valid one does not."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from jiliang.monitoring.detection import run_detectors
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert
from jiliang.registry.models import Instrument, InstrumentModel, Place
from tests.shared_data import testdata
from tests.world import World

pytestmark = pytest.mark.django_db


def _record(name: str) -> tuple[str, str]:
    v = ET.parse(testdata("ocmf", name)).getroot().find("value")  # noqa: S314 (the project's own test data)
    assert v is not None
    return (v.findtext("signedData") or "").strip(), "".join((v.findtext("publicKey") or "").split())


def test_tampered_ocmf_opens_an_alert_and_a_valid_one_does_not(world: World) -> None:
    ok_data, key = _record("keba_kcp30_ok.xml")
    bad_data, _ = _record("keba_kcp30_tampered.xml")
    op = world.orgs["mo_n"]
    cs = Place.objects.create(key="CS-O", name="充电站", kind="charging_station", region_id="440305", operator=op)
    model = InstrumentModel.objects.create(maker=world.orgs["maker"], name="KCP30", instrument_type_id="ev_charger_ac",
                                           accuracy_class="2")
    for dev, pk in (("EV-OK", key), ("EV-BAD", key), ("EV-NOKEY", "")):
        Instrument.objects.create(device_id=dev, serial=dev, model=model, instrument_type_id="ev_charger_ac",
                                  maker=world.orgs["maker"], owner=op, place=cs, region_id="440305",
                                  status="in_service", public_key_hex=pk)

    def session(dev: str, ocmf: str) -> bytes:
        return json.dumps({"kind": "charger.session", "device": dev, "seq": 1, "session_id": "s", "vehicle": "v",
                           "start_ts": "2019-08-13T18:03:15+08:00", "end_ts": "2019-08-13T18:03:36+08:00",
                           "meter_start_wh": 259, "meter_end_wh": 260, "energy_wh": 1, "ocmf": ocmf}).encode()

    rep = ingest_lines([session("EV-OK", ok_data), session("EV-BAD", bad_data), session("EV-NOKEY", ok_data)],
                       source="t")
    assert rep.accepted == 3
    run_detectors()
    flagged = {a.device.device_id: a for a in Alert.objects.filter(detector="charger.ocmf_signature")}
    assert set(flagged) == {"EV-BAD", "EV-NOKEY"}
    assert "does not match" in flagged["EV-BAD"].evidence["failures"][0]["reason"]
    assert "no public key" in flagged["EV-NOKEY"].evidence["failures"][0]["reason"]
