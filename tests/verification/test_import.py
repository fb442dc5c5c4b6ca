"""Verification records: judged by the engine, validity by verification mode, scope, all-or-nothing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client

from jiliang.accounts.models import SystemPrincipal
from jiliang.core.errors import JiliangError
from jiliang.registry.models import Instrument
from jiliang.registry.tabular import Table
from jiliang.verification.importing import import_verifications
from jiliang.verification.models import Verification
from jiliang.verification.selectors import due_instruments, public_latest_verification
from jiliang.verification.services import verification_record
from tests.world import World

pytestmark = pytest.mark.django_db
SCALE_OK = [{"load_g": 2500, "error_g": 2.5}, {"load_g": 15000, "error_g": -5}]
SCALE_BAD = [{"load_g": 15000, "error_g": 8}]
WATER_OK = [{"point": "Q1", "error_pct": 4.0}, {"point": "Q3", "error_pct": 1.0}]


def table(*rows: dict[str, object]) -> Table:
    cols = ["device_id", "kind", "date", "institution_uscc", "points", "certificate_no"]
    out = []
    for n, r in enumerate(rows, start=2):
        vals = {c: (json.dumps(r[c]) if c == "points" else str(r.get(c, ""))) for c in cols}
        out.append((n, vals))
    return Table(columns=cols, rows=out)


def test_periodic_type_gets_next_due_date(world: World) -> None:
    inst = world.orgs["inst"].uscc
    import_verifications(table=table({"device_id": "SC-F-1", "kind": "periodic", "date": "2026-03-01",
                                      "institution_uscc": inst, "points": SCALE_OK, "certificate_no": "F2026-1"}),
                         actor=SystemPrincipal())
    v = Verification.objects.get(certificate_no="F2026-1")
    assert v.conforming and v.valid_until == dt.date(2027, 2, 28)   # scale: 12 months
    assert [r["verdict"] for r in v.results] == ["pass", "pass"]
    i = Instrument.objects.get(device_id="SC-F-1")
    assert (i.last_verified_on, i.last_verification_conforming, i.valid_until) == (
        dt.date(2026, 3, 1), True, dt.date(2027, 2, 28))


def test_failing_verification_has_no_validity_and_clears_it(world: World) -> None:
    inst = world.orgs["inst"].uscc
    import_verifications(table=table(
        {"device_id": "SC-F-1", "kind": "periodic", "date": "2025-03-01", "institution_uscc": inst, "points": SCALE_OK},
        {"device_id": "SC-F-1", "kind": "spot_check", "date": "2025-09-01", "institution_uscc": inst,
         "points": SCALE_BAD}), actor=SystemPrincipal())
    i = Instrument.objects.get(device_id="SC-F-1")
    assert i.last_verification_conforming is False and i.valid_until is None
    assert Verification.objects.get(kind="spot_check").results[0]["margin"] == -0.5


def test_first_only_type_counts_service_life_from_first_pass(world: World) -> None:
    inst = world.orgs["inst"].uscc
    import_verifications(table=table(
        {"device_id": "WM-N-1", "kind": "first", "date": "2020-03-01", "institution_uscc": inst, "points": WATER_OK},
        {"device_id": "WM-N-1", "kind": "spot_check", "date": "2024-05-01", "institution_uscc": inst,
         "points": WATER_OK}), actor=SystemPrincipal())
    # water meter: 6-year life from the first passing verification, not from the later check
    assert Instrument.objects.get(device_id="WM-N-1").valid_until == dt.date(2026, 2, 28)


def test_bad_rows_are_named_and_nothing_is_written(world: World) -> None:
    inst = world.orgs["inst"].uscc
    before = Verification.objects.count()
    with pytest.raises(JiliangError) as exc:
        import_verifications(table=table(
            {"device_id": "SC-F-1", "kind": "periodic", "date": "2026-03-01", "institution_uscc": inst,
             "points": SCALE_OK},
            {"device_id": "NOPE", "kind": "periodic", "date": "2026-03-01", "institution_uscc": inst, "points": []},
            {"device_id": "SC-F-1", "kind": "yearly", "date": "2026-13-01", "institution_uscc": inst,
             "points": SCALE_OK},
            {"device_id": "SC-F-1", "kind": "periodic", "date": "2026-03-01", "institution_uscc": inst,
             "points": [{"load_g": 99999, "error_g": 0}]},
            {"device_id": "SC-F-1", "kind": "periodic", "date": "2026-03-01",
             "institution_uscc": world.orgs["stall_f"].uscc, "points": SCALE_OK}), actor=SystemPrincipal())
    got = {(p.row, p.field) for p in exc.value.details}
    assert {(3, "device_id"), (4, "kind"), (4, "date"), (5, "points"), (6, "institution_uscc")} <= got
    assert "exceeds Max" in next(p.reason for p in exc.value.details if p.row == 5)
    assert Verification.objects.count() == before
    assert Instrument.objects.get(device_id="SC-F-1").last_verified_on is None


def test_institute_records_only_in_its_region_and_as_itself(world: World) -> None:
    user = world.users["futian_institute"]
    inst = world.orgs["inst"].uscc
    verification_record(actor=user, device_id="SC-F-1", kind="periodic", date="2026-01-05", institution_uscc=inst,
                        points=SCALE_OK)
    with pytest.raises(JiliangError, match="invalid"):
        verification_record(actor=user, device_id="SC-N-1", kind="periodic", date="2026-01-05",
                            institution_uscc=inst, points=SCALE_OK)


def test_due_lists_and_public_state(world: World) -> None:
    today = dt.date.today()
    i = world.instruments["I_F"]
    Instrument.objects.filter(pk=i.pk).update(valid_until=today + dt.timedelta(days=10))
    Instrument.objects.filter(pk=world.instruments["I_N"].pk).update(valid_until=today - dt.timedelta(days=1))
    admin = world.users["admin"]
    assert [x.device_id for x in due_instruments(principal=admin)] == ["SC-F-1"]
    assert [x.device_id for x in due_instruments(principal=admin, overdue=True)] == ["SC-N-1"]
    assert list(due_instruments(principal=world.users["futian_regulator"], overdue=True)) == []
    i.refresh_from_db()
    assert public_latest_verification(i).state == "due_soon"


def test_api_create_and_scope(world: World) -> None:
    c = Client()
    c.force_login(world.users["futian_institute"])
    r = c.post("/api/v1/verifications", {"device_id": "SC-F-1", "kind": "periodic", "date": "2026-02-01",
                                         "institution_uscc": world.orgs["inst"].uscc, "points": SCALE_OK},
               content_type="application/json")
    assert r.status_code == 201, r.content
    assert r.json()["conforming"] is True and r.json()["valid_until"] == "2027-01-31"
    other = Client()
    other.force_login(world.users["water_user"])
    assert other.get(f"/api/v1/verifications/{r.json()['id']}").status_code == 404
    assert r.json()["id"] not in {v["id"] for v in other.get("/api/v1/verifications").json()["items"]}
