"""Uploading factory verification data: every refusal reason (row, field, reason), all-or-nothing,
idempotency on maker + serial, spreadsheet formats, and the batch statistics stored with the units."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest
from django.test import Client
from openpyxl import Workbook

from jiliang.core.errors import JiliangError
from jiliang.core.models import ChangeLog
from jiliang.factory import services, upload
from jiliang.factory.models import BatchPointStat, FactoryUnit, FactoryUpload
from jiliang.registry.models import InstrumentModel
from jiliang.registry.tabular import read_table
from tests.factory.helpers import Fx, grant

pytestmark = pytest.mark.django_db


def refused(fx: Fx, records: list[dict[str, Any]], actor: str = "maker_user") -> list[tuple[int | None, str | None,
                                                                                        str]]:
    with pytest.raises(JiliangError) as ei:
        upload.upload_units(actor=fx.world.users[actor], records=records)
    assert FactoryUnit.objects.count() == 0, "a refused upload stores nothing"
    return [(p.row, p.field, p.reason) for p in ei.value.details]


def test_good_upload_stores_units_judged_with_validity_and_one_logged_receipt(fx: Fx) -> None:
    res = upload.upload_units(actor=fx.world.users["maker_user"], records=[fx.unit("A1"), fx.unit("A2")])
    assert (res.created, res.unchanged, res.rejected) == (2, 0, 0)
    u = FactoryUnit.objects.get(serial="A1")
    assert u.conforming and u.size_dn == 15 and u.model_id == fx.model.pk and u.authorization_id == fx.auth.pk
    assert str(u.valid_until) == "2031-03-01"  # water meter: 6-year service life from the verification
    assert json.loads(u.points)[0] == ["Q1", 1.0]  # the compact stored form
    assert upload.points_from_text(u.points)[0] == {"point": "Q1", "error_pct": 1.0}
    up = FactoryUpload.objects.get()
    assert up.created == 2 and len(up.sha256) == 64
    assert ChangeLog.objects.filter(model="factoryupload", object_id=str(up.pk)).count() == 1


@pytest.mark.parametrize(("over", "field", "reason"), [
    ({"serial": ""}, "serial", "required value is empty"),
    ({"model": "NOPE-1"}, "model", "no such model of this manufacturer is registered"),
    ({"size": "DN50"}, "size", "outside the authorized scope (water_meter DN15–DN40)"),
    ({"size": "big"}, "size", "not a nominal size"),
    ({"accuracy_class": "1"}, "accuracy_class", "model LXS-15 is class 2"),
    ({"production_date": "2025-13-01"}, "production_date", "not a date"),
    ({"verification_date": "2099-01-01"}, "verification_date", "lies in the future"),
    ({"production_date": "2025-03-05"}, "production_date", "after the verification date"),
    ({"verification_date": "2024-12-01", "production_date": "2024-11-01"}, "verification_date",
     "outside the authorization's validity"),
    ({"conclusion": "maybe"}, "conclusion", "use 合格/pass or 不合格/fail"),
    ({"points": [{"point": "Q1", "error_pct": 1.0}, {"point": "Q3", "error_pct": 2.4}]}, "conclusion",
     "marked as passed, but the rule engine judges it failed at Q3 (error 2.4 %, limits -2 to 2 %)"),
    ({"conclusion": "不合格"}, "conclusion", "marked as failed, but every test point is within the MPE"),
    ({"points": []}, "points", "must be a non-empty list"),
    ({"points": "[oops"}, "points", "not valid JSON"),
    ({"points": [{"point": "Q9", "error_pct": 1.0}]}, "points[0].point", "unknown point 'Q9' for water_meter"),
    ({"points": [{"point": "Q1", "error_pct": "x"}]}, "points[0].error_pct", "must be a finite number"),
    ({"valid_until": "2040-01-01"}, "valid_until", "beyond what the verification covers (2031-03-01)"),
    ({"valid_until": "2025-03-01"}, "valid_until", "must lie after the verification date"),
    ({"institution": ""}, "institution", "required value is empty"),
    ({"colour": "red"}, "colour", "unknown field"),
])
def test_each_refusal_names_row_field_and_reason(fx: Fx, over: dict[str, Any], field: str, reason: str) -> None:
    probs = refused(fx, [fx.unit("OK1"), fx.unit("BAD", **over)])
    assert any(row == 2 and f == field and reason in r for row, f, r in probs), probs
    assert all(row == 2 for row, _, _ in probs), "the good first record has no problem"


def test_failed_unit_reported_as_failed_is_stored_without_validity(fx: Fx) -> None:
    rec = fx.unit("F1", conclusion="不合格", points=[{"point": "Q3", "error_pct": -2.5}])
    upload.upload_units(actor=fx.world.users["maker_user"], records=[rec])
    u = FactoryUnit.objects.get(serial="F1")
    assert not u.conforming and u.valid_until is None
    probs = refused_after(fx, [fx.unit("F2", conclusion="不合格", valid_until="2030-01-01",
                                       points=[{"point": "Q3", "error_pct": -2.5}])])
    assert ("valid_until", "a failed unit has no validity") in probs


def refused_after(fx: Fx, records: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    before = FactoryUnit.objects.count()
    with pytest.raises(JiliangError) as ei:
        upload.upload_units(actor=fx.world.users["maker_user"], records=records)
    assert FactoryUnit.objects.count() == before
    return [(p.field, p.reason) for p in ei.value.details]


def test_maker_checks_other_maker_unauthorized_suspended_expired(fx: Fx) -> None:
    w = fx.world
    # someone else's credit code
    probs = refused(fx, [fx.unit("X1", maker=w.orgs["water"].uscc)])
    assert probs == [(1, "maker", "the organization is not a manufacturer")]
    # an administrator uploading for a manufacturer without an authorization
    InstrumentModel.objects.create(maker=w.orgs["inst"], name="LXS-15", instrument_type_id="water_meter",
                                   accuracy_class="2", params={"Q3_m3h": 2.5, "R": 100})
    from jiliang.registry.models import OrganizationKind
    OrganizationKind.objects.create(organization=w.orgs["inst"], kind="manufacturer")
    probs = refused(fx, [fx.unit("X2", maker=w.orgs["inst"].uscc)], actor="admin")
    assert probs == [(1, "maker", "the manufacturer holds no factory verification authorization (二检合一)")]
    # the maker's own user for another maker
    grant(w, "inst")
    probs = refused(fx, [fx.unit("X3", maker=w.orgs["inst"].uscc)])
    assert probs == [(1, "maker", "a manufacturer uploads only units it made")]
    # suspended authorization
    services.authorization_transition(actor=w.users["admin"], authorization_id=fx.auth.pk, event="suspend",
                                      note="test")
    probs = refused(fx, [fx.unit("X4")])
    assert probs == [(1, "maker", "the authorization is suspended: no factory verification may be uploaded")]


def test_all_or_nothing_and_skip_invalid(fx: Fx) -> None:
    recs = [fx.unit("G1"), fx.unit("G2", size="DN80"), fx.unit("G3")]
    with pytest.raises(JiliangError, match="1 of 3 records are invalid; nothing was stored"):
        upload.upload_units(actor=fx.world.users["maker_user"], records=recs)
    assert FactoryUnit.objects.count() == 0 and BatchPointStat.objects.count() == 0
    res = upload.upload_units(actor=fx.world.users["maker_user"], records=recs, skip_invalid=True)
    assert (res.created, res.rejected) == (2, 1) and res.problems[0].row == 2
    assert set(FactoryUnit.objects.values_list("serial", flat=True)) == {"G1", "G3"}


def test_idempotent_on_maker_and_serial(fx: Fx) -> None:
    user = fx.world.users["maker_user"]
    recs = [fx.unit(f"I{i}") for i in range(5)]
    assert upload.upload_units(actor=user, records=recs).created == 5
    again = upload.upload_units(actor=user, records=[*recs, fx.unit("I5")])
    assert (again.created, again.unchanged) == (1, 5)
    assert FactoryUnit.objects.count() == 6
    assert BatchPointStat.objects.get(point="Q1").n == 6, "re-uploaded units are not counted twice"
    assert upload.upload_units(actor=user, records=recs).created == 0
    # the same serial with different data is refused, not overwritten
    probs = refused_after(fx, [fx.unit("I1", points=[{"point": "Q1", "error_pct": 0.1}])])
    assert probs[0][0] == "points" and "already stored with different data" in probs[0][1]
    probs = refused_after(fx, [fx.unit("Z1"), fx.unit("Z1")])
    assert probs == [("serial", "duplicate of row 1 in this upload")]


def test_batch_statistics_are_the_moments_of_the_stored_errors(fx: Fx) -> None:
    rng = np.random.default_rng(5)
    errs = np.round(rng.normal(0.4, 0.3, size=(60, 3)), 3).clip(-1.9, 1.9)
    recs = [fx.unit(f"S{i}", batch="B7", points=[{"point": p, "error_pct": float(e)} for p, e in
                                               zip(("Q1", "Q2", "Q3"), errs[i], strict=True)]) for i in range(60)]
    user = fx.world.users["maker_user"]
    upload.upload_units(actor=user, records=recs[:25])
    upload.upload_units(actor=user, records=recs[25:])  # merged with the first upload's moments
    for k, p in enumerate(("Q1", "Q2", "Q3")):
        s = BatchPointStat.objects.get(batch="B7", point=p)
        assert s.n == 60
        assert s.mean == pytest.approx(errs[:, k].mean(), abs=1e-12)
        assert np.sqrt(s.m2 / 59) == pytest.approx(errs[:, k].std(ddof=1), rel=1e-9)
        assert s.mpe == (5.0 if p == "Q1" else 2.0)


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    cols = list(upload.REQUIRED) + ["batch"]
    wr = csv.DictWriter(buf, fieldnames=cols)
    wr.writeheader()
    for r in rows:
        wr.writerow({c: json.dumps(r[c]) if c == "points" else r.get(c, "") for c in cols})
    return buf.getvalue().encode()


def test_csv_and_xlsx_rows_are_spreadsheet_lines(fx: Fx) -> None:
    data = _csv([fx.unit("C1"), fx.unit("C2", size="DN100")])
    records, rows = upload.table_records(read_table(data, "units.csv"))
    with pytest.raises(JiliangError) as ei:
        upload.upload_units(actor=fx.world.users["maker_user"], records=records, rows=rows)
    assert [(p.row, p.field) for p in ei.value.details] == [(3, "size")]
    wb = Workbook()
    ws = wb.active
    cols = list(upload.REQUIRED)
    ws.append(cols)
    ws.append([json.dumps(fx.unit("X1")[c]) if c == "points" else fx.unit("X1")[c] for c in cols])
    out = io.BytesIO()
    wb.save(out)
    records, rows = upload.table_records(read_table(out.getvalue(), "units.xlsx"))
    res = upload.upload_units(actor=fx.world.users["maker_user"], records=records, rows=rows)
    assert res.created == 1 and FactoryUnit.objects.get().batch == "LXS-15-20250301"  # default batch
    with pytest.raises(JiliangError) as ei:
        upload.table_records(read_table(b"serial,colour\nA,red\n", "x.csv"))
    assert {(p.field, p.reason) for p in ei.value.details} >= {("model", "required column is missing"),
                                                               ("colour", ei.value.details[-1].reason)}


def test_api_json_ndjson_and_file(fx: Fx) -> None:
    c = Client()
    c.force_login(fx.world.users["maker_user"])
    r = c.post("/api/v1/factory/units", [fx.unit("J1"), fx.unit("J2")], content_type="application/json")
    assert r.status_code == 200 and r.json()["created"] == 2, r.content
    nd = "\n".join(json.dumps(fx.unit(s)) for s in ("J2", "J3")) + "\n"
    r = c.post("/api/v1/factory/units", nd, content_type="application/x-ndjson")
    assert r.status_code == 200 and (r.json()["created"], r.json()["unchanged"]) == (1, 1)
    r = c.post("/api/v1/factory/units", "\n" + json.dumps(fx.unit("J4", size="DN99")),
               content_type="application/x-ndjson")
    assert r.status_code == 400
    assert r.json()["error"]["details"][0] == {"row": 2, "field": "size", "value": "DN99",
                                               "reason": "outside the authorized scope (water_meter DN15–DN40)"}
    from django.core.files.uploadedfile import SimpleUploadedFile
    r = c.post("/api/v1/factory/units/file", {"file": SimpleUploadedFile("u.csv", _csv([fx.unit("J5")]))})
    assert r.status_code == 200 and r.json()["created"] == 1, r.content
    assert FactoryUnit.objects.count() == 4


def _nd(records: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()


def test_columnar_path_stores_exactly_what_the_exact_path_stores(fx: Fx, monkeypatch: pytest.MonkeyPatch) -> None:
    user = fx.world.users["maker_user"]
    pts = [[1.0, -0.5, 0.3], [4.9, 1.2, -1.99], [0.0, 0.0, 2.5]]  # the last fails at Q3

    def mk(prefix: str) -> list[dict[str, Any]]:
        return [fx.unit(f"{prefix}{i}", conclusion="合格" if i < 2 else "不合格", batch=None,
                        points=[{"point": p, "error_pct": e} for p, e in zip(("Q1", "Q2", "Q3"), pts[i], strict=True)])
                for i in range(3)]

    exact = [{k: v for k, v in r.items() if v is not None} for r in mk("E")]
    upload.upload_units(actor=user, records=exact)
    called = []
    monkeypatch.setattr(upload, "upload_units", lambda **kw: called.append(kw))  # the fast path must not defer
    res = upload.upload_ndjson(actor=user, body=_nd([{k: v for k, v in r.items() if v is not None} for r in mk("F")]))
    assert res.created == 3 and not called
    cols = ["model_id", "instrument_type", "name", "size_dn", "accuracy_class", "batch", "production_date",
            "verification_date", "valid_until", "conforming", "institution", "points", "status", "authorization_id"]
    e = list(FactoryUnit.objects.filter(serial__startswith="E").order_by("serial").values_list(*cols))
    f = list(FactoryUnit.objects.filter(serial__startswith="F").order_by("serial").values_list(*cols))
    assert e == f and e[2][9] is False and e[2][8] is None
    s = BatchPointStat.objects.get(point="Q2")
    assert s.n == 6 and s.mean == pytest.approx(np.mean([-0.5, 1.2, 0.0] * 2))


@pytest.mark.parametrize("over", [{"size": "DN50"}, {"serial": ""}, {"conclusion": "不合格"}, {"colour": "x"},
                                  {"points": [{"point": "Q9", "error_pct": 1}]}, {"maker": "91440300MA5F00001X"},
                                  {"points": [{"point": "Q1", "error_pct": 9.9}]}, {"valid_until": "2040-01-01"},
                                  {"production_date": "2025-03-09"}, {"model": "X"}, {"accuracy_class": "1"}])
def test_columnar_path_defers_bad_bodies_to_the_exact_path(fx: Fx, over: dict[str, Any]) -> None:
    body = _nd([fx.unit("OK1", batch=None) | {}, fx.unit("BAD", **over)])
    body = body.replace(b', "batch": null', b"")
    with pytest.raises(JiliangError) as ei:
        upload.upload_ndjson(actor=fx.world.users["maker_user"], body=body)
    assert ei.value.details and all(p.row == 2 for p in ei.value.details), ei.value.details
    assert FactoryUnit.objects.count() == 0


def test_ndjson_reupload_is_idempotent_across_paths(fx: Fx) -> None:
    user = fx.world.users["maker_user"]
    body = _nd([{k: v for k, v in fx.unit(f"N{i}").items() if k != "batch"} for i in range(4)])
    assert upload.upload_ndjson(actor=user, body=body).created == 4
    again = upload.upload_ndjson(actor=user, body=body)  # stored serials: the exact path compares the data
    assert (again.created, again.unchanged) == (0, 4)
    assert FactoryUnit.objects.count() == 4
