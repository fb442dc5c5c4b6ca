"""Bulk import (SPEC 3.5): validation of every row first, all-or-nothing, --skip-invalid, three formats."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from openpyxl import Workbook

from jiliang.accounts.models import SystemPrincipal
from jiliang.core.changelog import history_for
from jiliang.core.errors import JiliangError
from jiliang.core.models import ChangeLog
from jiliang.registry.importing import import_instruments, import_organizations, import_places
from jiliang.registry.models import Instrument, InstrumentModel, Organization, OrganizationKind, Place
from jiliang.registry.tabular import read_table
from tests.world import World, make_uscc

pytestmark = pytest.mark.django_db
ADMIN = SystemPrincipal("test")

INSTR_COLS = ["device_id", "instrument_type", "maker_uscc", "model", "serial", "owner_uscc", "place_key", "status",
              "accuracy_class", "params", "install_date"]


def csv_bytes(cols: list[str], rows: list[list[Any]]) -> bytes:
    import csv

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    w.writerows(rows)
    return buf.getvalue().encode()


def good_row(w: World, n: int) -> list[Any]:
    return [f"SC-T-{n}", "scale", w.orgs["maker"].uscc, "ACS-30", f"T{n}", w.orgs["stall_f"].uscc, "MKT-F",
            "in_service", "III", '{"e_g": 10, "max_g": 30000}', "2025-06-01"]


def _state() -> tuple[int, int, int, int]:
    return (Instrument.objects.count(), InstrumentModel.objects.count(), ChangeLog.objects.count(),
            Organization.objects.count())


def test_bad_rows_are_all_reported_and_nothing_is_written(world: World) -> None:
    """The acceptance case: wrong check character, unknown model type and maker, duplicate serial, bad date."""
    bad_check = world.orgs["stall_f"].uscc[:17] + ("A" if world.orgs["stall_f"].uscc[17] != "A" else "B")
    rows = [
        good_row(world, 1),
        good_row(world, 2)[:5] + [bad_check] + good_row(world, 2)[6:],              # wrong check character
        ["SC-T-3", "scale_x", *good_row(world, 3)[2:]],                               # unknown instrument type
        good_row(world, 4)[:2] + [make_uscc("440305", 777)] + good_row(world, 4)[3:],  # maker not registered
        good_row(world, 5)[:4] + ["T1"] + good_row(world, 5)[5:],                     # duplicate serial (row 2)
        good_row(world, 6)[:10] + ["2025-02-30"],                                     # bad date
        good_row(world, 7)[:4] + ["S-SC-F-1"] + good_row(world, 7)[5:],               # serial already registered
        ["SC-F-1", *good_row(world, 8)[1:]],                                          # device id already registered
    ]
    before = _state()
    with pytest.raises(JiliangError) as exc:
        import_instruments(table=read_table(csv_bytes(INSTR_COLS, rows), "x.csv"), actor=ADMIN)
    assert _state() == before, "a refused import must leave the database unchanged"
    got = {(p.row, p.field) for p in exc.value.details}
    assert (3, "owner_uscc") in got
    assert (4, "instrument_type") in got
    assert (5, "maker_uscc") in got
    assert (6, "serial") in got
    assert (7, "install_date") in got
    assert (8, "serial") in got
    assert (9, "device_id") in got
    assert not any(p.row == 2 for p in exc.value.details)
    msgs = {(p.row, p.field): p.reason for p in exc.value.details}
    assert "check character" in msgs[(3, "owner_uscc")] and "expected" in msgs[(3, "owner_uscc")]
    assert "row 6" in msgs[(6, "serial")] or "row 2" in msgs[(6, "serial")]
    assert exc.value.code == "validation_failed" and "nothing was imported" in exc.value.message


def test_skip_invalid_writes_good_rows_and_returns_the_rejected(world: World) -> None:
    rows = [good_row(world, 1), good_row(world, 2)[:10] + ["not a date"], good_row(world, 3)]
    res = import_instruments(table=read_table(csv_bytes(INSTR_COLS, rows), "x.csv"), actor=ADMIN, skip_invalid=True)
    assert res.created == 2
    assert [r[0] for r in res.rejected] == [3]
    assert set(Instrument.objects.filter(device_id__startswith="SC-T-").values_list("device_id", flat=True)) == {
        "SC-T-1", "SC-T-3"}


def test_created_rows_are_complete_and_change_logged(world: World) -> None:
    import_instruments(table=read_table(csv_bytes(INSTR_COLS, [good_row(world, 1)]), "x.csv"), actor=ADMIN)
    inst = Instrument.objects.get(device_id="SC-T-1")
    assert inst.region_id == "440304" and inst.owner == world.orgs["stall_f"] and inst.place == world.places["P_F"]
    assert inst.params == {"e_g": 10, "max_g": 30000} and str(inst.install_date) == "2025-06-01"
    assert len(inst.qr_token) >= 20
    assert inst.model.name == "ACS-30" and inst.model.maker == world.orgs["maker"]  # model created on first use
    entry = ChangeLog.objects.get(model="instrument", action="import")  # one entry per block of imported rows
    assert entry.object_id == f"{inst.pk}-{inst.pk}" and entry.after["ranges"] == [[inst.pk, 1]]
    (log,) = history_for(inst)  # the instrument's history shows its own row of that entry
    assert log.action == "import" and log.actor_label == "test" and log.after["device_id"] == "SC-T-1"
    assert log.after["id"] == inst.pk and log.after["owner_id"] == world.orgs["stall_f"].pk
    assert "qr_token" not in log.after and "qr_token" not in str(entry.after)  # secrets never reach the log
    # a new instrument then uses the same id sequence without collision
    import_instruments(table=read_table(csv_bytes(INSTR_COLS, [good_row(world, 2)]), "x.csv"), actor=ADMIN)
    assert Instrument.objects.get(device_id="SC-T-2").pk > inst.pk


def test_same_rows_in_csv_xlsx_and_json_import_identically(world: World) -> None:
    rows = [good_row(world, 1)]
    wb = Workbook()
    ws = wb.active
    ws.append(INSTR_COLS)
    ws.append(rows[0])
    xbuf = io.BytesIO()
    wb.save(xbuf)
    js = json.dumps([dict(zip(INSTR_COLS, rows[0], strict=True)) | {"params": {"e_g": 10, "max_g": 30000}}]).encode()
    tables = [read_table(csv_bytes(INSTR_COLS, rows), "a.csv"), read_table(xbuf.getvalue(), "a.xlsx"),
              read_table(js, "a.json")]
    first = tables[0].rows[0][1]
    for t in tables[1:]:
        got = t.rows[0][1]
        assert {k: got[k] for k in first} | {"params": ""} == first | {"params": ""}
        assert json.loads(got["params"]) == json.loads(first["params"])


def test_header_problems_are_reported_before_rows(world: World) -> None:
    with pytest.raises(JiliangError) as exc:
        import_instruments(table=read_table(b"device_id,instrument_typ\nX,scale\n", "x.csv"), actor=ADMIN)
    fields = {p.field for p in exc.value.details}
    assert {"instrument_type", "instrument_typ", "serial"} <= fields


def test_organizations_import_validates_codes_kinds_regions(db: None) -> None:
    good = make_uscc("440304", 1)
    cols = ["uscc", "name", "kinds", "region_code", "contact_phone"]
    rows = [[good, "甲公司", "market_entity;market_operator", "440304", "0755-1234567"],
            [good, "重复", "market_entity", "440304", ""],
            [make_uscc("440304", 2)[:17] + "0", "乙", "market_entity", "440304", ""],
            [make_uscc("440304", 3), "丙", "farmer", "440304", ""],
            [make_uscc("440304", 4), "丁", "utility", "999999", "call me"]]
    with pytest.raises(JiliangError) as exc:
        import_organizations(table=read_table(csv_bytes(cols, rows), "o.csv"), actor=ADMIN)
    got = {(p.row, p.field) for p in exc.value.details}
    assert {(3, "uscc"), (5, "kinds"), (6, "region_code"), (6, "contact_phone")} <= got
    if make_uscc("440304", 2)[17] != "0":
        assert (4, "uscc") in got
    assert Organization.objects.count() == 0
    import_organizations(table=read_table(csv_bytes(cols, rows[:1]), "o.csv"), actor=ADMIN)
    assert sorted(OrganizationKind.objects.values_list("kind", flat=True)) == ["market_entity", "market_operator"]


def test_places_import(world: World) -> None:
    cols = ["key", "name", "kind", "region_code", "operator_uscc", "lat", "lon"]
    rows = [["MKT-X", "新市场", "market", "440304", world.orgs["mo_f"].uscc, "22.5", "114.0"],
            ["MKT-F", "重复", "market", "440304", world.orgs["mo_f"].uscc, "", ""],
            ["MKT-Y", "坏坐标", "bazaar", "440304", world.orgs["mo_f"].uscc, "95", "x"]]
    with pytest.raises(JiliangError) as exc:
        import_places(table=read_table(csv_bytes(cols, rows), "p.csv"), actor=ADMIN)
    got = {(p.row, p.field) for p in exc.value.details}
    assert {(3, "key"), (4, "kind"), (4, "lat"), (4, "lon")} <= got
    res = import_places(table=read_table(csv_bytes(cols, rows), "p.csv"), actor=ADMIN, skip_invalid=True)
    assert res.created == 1 and Place.objects.get(key="MKT-X").lat == 22.5


@pytest.mark.parametrize(("data", "name", "code"), [
    (b"\xff\xfe\x00bad", "x.csv", "bad_encoding"),
    (b"{not json", "x.json", "bad_json"),
    (b"{}", "x.json", "bad_json"),
    (b"", "x.csv", "empty_file"),
    (b"abc", "x.txt", "unsupported_format"),
    (b"not a zip", "x.xlsx", "bad_file"),
])
def test_unreadable_files_get_a_clear_error(data: bytes, name: str, code: str) -> None:
    with pytest.raises(JiliangError) as exc:
        read_table(data, name)
    assert exc.value.code == code


def test_ragged_csv_row_is_reported_with_its_line(world: World) -> None:
    data = csv_bytes(INSTR_COLS, [good_row(world, 1)]) + b"only,three,values\n"
    with pytest.raises(JiliangError) as exc:
        import_instruments(table=read_table(data, "x.csv"), actor=ADMIN)
    assert exc.value.details[0].row == 3 and "3 values for 11 columns" in exc.value.details[0].reason
