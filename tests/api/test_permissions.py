"""Every API operation × every role: what it may and may not see and change.

``CASES`` must name every operation in the OpenAPI document: adding an endpoint without a case here fails
``test_every_operation_has_a_permission_case``.  Expectations come from tests/world.py, written by hand.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from jiliang.accounts.services import api_token_create
from jiliang.config.api import api
from jiliang.registry.models import Instrument, Organization, Place
from tests.api.permcases import ALL_USERS, CASES, PUBLIC_OPERATIONS, case, ids, load_case_modules
from tests.world import World, expected_visibility, make_uscc

pytestmark = pytest.mark.django_db
load_case_modules()  # tests/api/cases_*.py add their own operations to CASES (before the parametrisation)

# ------------------------------------------------------------------------------------------------ the cases

@case("get", "/api/v1/regions")
def _regions(w: World, c: dict[str, Client]) -> None:
    for name in ALL_USERS:
        r = c[name].get("/api/v1/regions")
        assert r.status_code == 200 and any(x["code"] == "440304" for x in r.json())


@case("get", "/api/v1/instrument-types")
def _types(w: World, c: dict[str, Client]) -> None:
    for name in ALL_USERS:
        r = c[name].get("/api/v1/instrument-types")
        assert r.status_code == 200 and len(r.json()) == 8


@case("get", "/api/v1/organizations")
def _orgs(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/organizations?limit=500")) == exp[name]["orgs"], name


@case("get", "/api/v1/organizations/{org_id}")
def _org(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    for name in ALL_USERS:
        for org in w.orgs.values():
            r = c[name].get(f"/api/v1/organizations/{org.pk}")
            assert r.status_code == (200 if org.pk in exp[name]["orgs"] else 404), (name, org.name)


@case("post", "/api/v1/organizations")
def _org_create(w: World, c: dict[str, Client]) -> None:
    allowed = {"admin", "city_regulator", "futian_regulator"}
    for n, name in enumerate(ALL_USERS, start=50):
        code = make_uscc("440304", n, "92")
        r = c[name].post("/api/v1/organizations", {"uscc": code, "name": f"新摊位{n}", "kinds": ["market_entity"],
                                                   "region_code": "440304"}, content_type="application/json")
        created = Organization.objects.filter(uscc=code).exists()
        assert (r.status_code == 201) == (name in allowed) == created, (name, r.content)
    # a district regulator cannot register in another district
    code = make_uscc("440305", 99, "92")
    body = {"uscc": code, "name": "南山某店", "kinds": ["market_entity"], "region_code": "440305"}
    r = c["futian_regulator"].post("/api/v1/organizations", body, content_type="application/json")
    assert r.status_code == 400 and not Organization.objects.filter(uscc=code).exists()


@case("patch", "/api/v1/organizations/{org_id}")
def _org_patch(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    target = w.orgs["stall_f"]
    allowed = {"admin", "city_regulator", "futian_regulator", "stall_f_user"}
    for name in ALL_USERS:
        r = c[name].patch(f"/api/v1/organizations/{target.pk}", {"address": f"by {name}"},
                          content_type="application/json")
        want = 200 if name in allowed else (403 if target.pk in exp[name]["orgs"] else 404)
        assert r.status_code == want, (name, r.content)
        target.refresh_from_db()
        assert (target.address == f"by {name}") == (name in allowed)


@case("get", "/api/v1/places")
def _places(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/places")) == exp[name]["places"], name


@case("get", "/api/v1/places/{place_id}")
def _place(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    for name in ALL_USERS:
        for p in w.places.values():
            r = c[name].get(f"/api/v1/places/{p.pk}")
            assert r.status_code == (200 if p.pk in exp[name]["places"] else 404), (name, p.key)


@case("post", "/api/v1/places")
def _place_create(w: World, c: dict[str, Client]) -> None:
    allowed = {"admin", "city_regulator", "futian_regulator"}
    for name in ALL_USERS:
        key = f"MKT-NEW-{name}"
        r = c[name].post("/api/v1/places", {"key": key, "name": "新市场", "kind": "market", "region_code": "440304",
                                            "operator_uscc": w.orgs["mo_f"].uscc}, content_type="application/json")
        assert (r.status_code == 201) == (name in allowed) == Place.objects.filter(key=key).exists(), (name, r.content)


@case("get", "/api/v1/instrument-models")
def _models(w: World, c: dict[str, Client]) -> None:
    for name in ALL_USERS:
        n = len(ids(c[name].get("/api/v1/instrument-models")))
        assert n == (0 if name == "citizen" else 2), name


@case("get", "/api/v1/instruments")
def _instruments(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/instruments")) == exp[name]["instruments"], name
        # filters never widen the scope
        assert ids(c[name].get("/api/v1/instruments?region=440305")) <= exp[name]["instruments"]


@case("get", "/api/v1/instruments/{instrument_id}")
def _instrument(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    for name in ALL_USERS:
        for i in w.instruments.values():
            r = c[name].get(f"/api/v1/instruments/{i.pk}")
            assert r.status_code == (200 if i.pk in exp[name]["instruments"] else 404), (name, i.device_id)


def _new_scale(w: World, device: str) -> dict[str, Any]:
    return {"device_id": device, "instrument_type": "scale", "maker_uscc": w.orgs["maker"].uscc, "model": "ACS-15",
            "serial": "NEW-" + device, "owner_uscc": w.orgs["stall_f"].uscc, "place_key": "MKT-F",
            "status": "in_service", "accuracy_class": "III"}


INSTRUMENT_WRITERS = {"admin", "city_regulator", "futian_regulator", "stall_f_user"}


@case("post", "/api/v1/instruments")
def _instrument_create(w: World, c: dict[str, Client]) -> None:
    for name in ALL_USERS:
        dev = f"SC-NEW-{name}"
        r = c[name].post("/api/v1/instruments", _new_scale(w, dev), content_type="application/json")
        made = Instrument.objects.filter(device_id=dev).exists()
        assert (r.status_code == 201) == (name in INSTRUMENT_WRITERS) == made, (name, r.content)


@case("patch", "/api/v1/instruments/{instrument_id}")
def _instrument_patch(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    target = w.instruments["I_F"]
    for name in ALL_USERS:
        r = c[name].patch(f"/api/v1/instruments/{target.pk}", {"sw_id": name[:20]}, content_type="application/json")
        want = 200 if name in INSTRUMENT_WRITERS else (403 if target.pk in exp[name]["instruments"] else 404)
        assert r.status_code == want, (name, r.content)
        target.refresh_from_db()
        assert (target.sw_id == name[:20]) == (name in INSTRUMENT_WRITERS)


@case("post", "/api/v1/import/{kind}")
def _import(w: World, c: dict[str, Client]) -> None:
    for name in ALL_USERS:
        dev = f"SC-IMP-{name}"
        row = _new_scale(w, dev)
        csv = ",".join(row) + "\n" + ",".join(str(v) for v in row.values()) + "\n"
        f = SimpleUploadedFile("x.csv", csv.encode(), content_type="text/csv")
        r = c[name].post("/api/v1/import/instruments", {"file": f})
        made = Instrument.objects.filter(device_id=dev).exists()
        assert (r.status_code == 200) == (name in INSTRUMENT_WRITERS) == made, (name, r.content)


@case("get", "/api/v1/verifications")
def _verifications(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/verifications")) == exp[name]["verifications"], name


@case("get", "/api/v1/verifications/{verification_id}")
def _verification(w: World, c: dict[str, Client]) -> None:
    exp = expected_visibility(w)
    for name in ALL_USERS:
        for v in w.verifications.values():
            r = c[name].get(f"/api/v1/verifications/{v.pk}")
            assert r.status_code == (200 if v.pk in exp[name]["verifications"] else 404), (name, v.pk)


@case("post", "/api/v1/verifications")
def _verification_create(w: World, c: dict[str, Client]) -> None:
    from jiliang.verification.models import Verification

    allowed = {"admin", "city_regulator", "futian_regulator", "futian_institute"}
    for n, name in enumerate(ALL_USERS):
        before = Verification.objects.count()
        body = {"device_id": "SC-F-1", "kind": "periodic", "date": f"2026-01-{n + 1:02d}",
                "institution_uscc": w.orgs["inst"].uscc, "points": [{"load_g": 100, "error_g": 1}]}
        r = c[name].post("/api/v1/verifications", body, content_type="application/json")
        made = Verification.objects.count() == before + 1
        assert (r.status_code == 201) == (name in allowed) == made, (name, r.content)
    # a manufacturer may record a factory verification of its own instrument, as the institution itself
    r = c["maker_user"].post("/api/v1/verifications", {
        "device_id": "SC-F-1", "kind": "factory", "date": "2025-01-01", "institution_uscc": w.orgs["maker"].uscc,
        "points": [{"load_g": 100, "error_g": 1}]}, content_type="application/json")
    assert r.status_code == 201, r.content


@case("post", "/api/v1/telemetry")
def _telemetry(w: World, c: dict[str, Client]) -> None:
    """Everyone signed in may send, but only records of devices their organisation owns are accepted."""
    from jiliang.monitoring.models import MeterReading

    owners = {"water_user"}  # the water utility owns WM-N-1
    for n, name in enumerate(ALL_USERS):
        line = ('{"kind":"meter.reading","device":"WM-N-1","ts":"2026-11-01T08:00:00+08:00",'
                f'"seq":{1000 + n},"register":12.5}}')
        before = MeterReading.objects.count()
        r = c[name].post("/api/v1/telemetry", line, content_type="application/x-ndjson")
        stored = MeterReading.objects.count() == before + 1
        if name == "admin":
            assert r.status_code == 200 and stored, r.content
        elif name in owners:
            assert r.status_code == 200 and r.json()["accepted"] == 1 and stored, r.content
        elif name == "citizen":
            assert r.status_code == 403 and not stored
        else:
            assert r.status_code == 200 and r.json()["rejected"] == 1 and not stored, (name, r.content)
            assert "does not belong" in r.json()["rejections"][0]["reason"]


def _alert(w: World) -> Any:
    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.ingest import ingest_lines
    from jiliang.monitoring.models import Alert

    line = ('{"kind":"scale.txn","device":"SC-F-1","ts":"2026-11-01T08:00:00+08:00","seq":1,"net_g":1000,'
            '"tare_g":0,"unit_price_fen_per_kg":1500,"amount_fen":1600}')
    ingest_lines([line.encode()], source="test")
    run_detectors()
    return Alert.objects.get(device__device_id="SC-F-1")


ALERT_VIEWERS = {"admin", "city_regulator", "futian_regulator", "futian_inspector"}
ALERT_DECIDERS = {"admin", "city_regulator", "futian_regulator"}


@case("get", "/api/v1/alerts")
def _alerts(w: World, c: dict[str, Client]) -> None:
    a = _alert(w)
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/alerts")) == ({a.pk} if name in ALERT_VIEWERS else set()), name


@case("get", "/api/v1/alerts/{alert_id}")
def _alert_get(w: World, c: dict[str, Client]) -> None:
    a = _alert(w)
    for name in ALL_USERS:
        r = c[name].get(f"/api/v1/alerts/{a.pk}")
        assert r.status_code == (200 if name in ALERT_VIEWERS else 404), name


@case("patch", "/api/v1/alerts/{alert_id}")
def _alert_patch(w: World, c: dict[str, Client]) -> None:
    a = _alert(w)
    for name in ALL_USERS:
        r = c[name].patch(f"/api/v1/alerts/{a.pk}", {"status": "triaged"},
                          content_type="application/json")
        if name in ALERT_DECIDERS:
            assert r.status_code in (200, 400), (name, r.content)  # 400 once it is already triaged
        else:
            assert r.status_code == (403 if name in ALERT_VIEWERS else 404), (name, r.content)
    a.refresh_from_db()
    assert a.status == "triaged"


# ------------------------------------------------------------------------------ certificates (检定证书, issue 3)

CERT_SIGNERS = {"admin", "futian_institute"}  # the institution that performed V_F, V_N and V_W, and the admin


def _issue_all(w: World) -> dict[str, Any]:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.verification.certificates import certificate_issue

    return {k: certificate_issue(actor=SystemPrincipal(), verification_id=v.pk) for k, v in w.verifications.items()}


def _visible_certs(w: World, certs: dict[str, Any], name: str) -> set[int]:
    seen = expected_visibility(w)[name]["verifications"]
    return {c.pk for k, c in certs.items() if w.verifications[k].pk in seen}


@case("post", "/api/v1/verifications/{verification_id}/certificate")
def _certificate_issue(w: World, c: dict[str, Client]) -> None:
    from jiliang.verification.models import Certificate

    exp = expected_visibility(w)
    v_f = w.verifications["V_F"]
    for name in ALL_USERS:
        if name in CERT_SIGNERS:
            continue
        r = c[name].post(f"/api/v1/verifications/{v_f.pk}/certificate", {}, content_type="application/json")
        want = 403 if v_f.pk in exp[name]["verifications"] else 404
        assert r.status_code == want, (name, r.content)
        assert not Certificate.objects.exists(), name
    r = c["futian_institute"].post(f"/api/v1/verifications/{v_f.pk}/certificate", {"checker": "李核验"},
                                   content_type="application/json")
    assert r.status_code == 201 and r.json()["kind"] == "certificate" and r.json()["payload"].startswith("JL1:")
    r = c["admin"].post(f"/api/v1/verifications/{w.verifications['V_N'].pk}/certificate", {},
                        content_type="application/json")
    assert r.status_code == 201, r.content
    r = c["admin"].post(f"/api/v1/verifications/{v_f.pk}/certificate", {}, content_type="application/json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_issued"


@case("get", "/api/v1/certificates")
def _certificates(w: World, c: dict[str, Client]) -> None:
    certs = _issue_all(w)
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/certificates")) == _visible_certs(w, certs, name), name


@case("get", "/api/v1/certificates/{certificate_id}")
def _certificate(w: World, c: dict[str, Client]) -> None:
    certs = _issue_all(w)
    for name in ALL_USERS:
        visible = _visible_certs(w, certs, name)
        for cert in certs.values():
            r = c[name].get(f"/api/v1/certificates/{cert.pk}")
            assert r.status_code == (200 if cert.pk in visible else 404), (name, cert.number)


@case("get", "/api/v1/certificates/{certificate_id}/pdf")
def _certificate_pdf(w: World, c: dict[str, Client]) -> None:
    cert = _issue_all(w)["V_F"]
    for name in ALL_USERS:
        r = c[name].get(f"/api/v1/certificates/{cert.pk}/pdf")
        if cert.pk in _visible_certs(w, {"V_F": cert}, name):
            assert r.status_code == 200 and r["Content-Type"] == "application/pdf", name
            assert r.content.startswith(b"%PDF")
        else:
            assert r.status_code == 404, name


@case("post", "/api/v1/certificates/{certificate_id}/revoke")
def _certificate_revoke(w: World, c: dict[str, Client]) -> None:
    from jiliang.verification.models import Certificate

    cert = _issue_all(w)["V_F"]
    for name in ALL_USERS:
        if name in CERT_SIGNERS:
            continue
        r = c[name].post(f"/api/v1/certificates/{cert.pk}/revoke", {"reason": "x"}, content_type="application/json")
        want = 403 if cert.pk in _visible_certs(w, {"V_F": cert}, name) else 404
        assert r.status_code == want, (name, r.content)
        assert Certificate.objects.get(pk=cert.pk).revoked_at is None
    r = c["futian_institute"].post(f"/api/v1/certificates/{cert.pk}/revoke", {"reason": "录入错误"},
                                   content_type="application/json")
    assert r.status_code == 200 and r.json()["revoked_at"], r.content
    r = c["admin"].post(f"/api/v1/certificates/{cert.pk}/revoke", {"reason": "again"}, content_type="application/json")
    assert r.status_code == 409


# Public operations: everyone, signed in or not, gets the same answer.
@case("get", "/api/v1/public/keys")
def _public_keys(w: World, c: dict[str, Client]) -> None:
    certs = _issue_all(w)
    for client in [*c.values(), Client()]:
        r = client.get("/api/v1/public/keys")
        assert r.status_code == 200 and [k["kid"] for k in r.json()] == [certs["V_F"].key.kid]


@case("get", "/api/v1/public/certificates/revoked")
def _public_revoked(w: World, c: dict[str, Client]) -> None:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.verification.certificates import certificate_revoke

    cert = _issue_all(w)["V_N"]
    certificate_revoke(actor=SystemPrincipal(), certificate_id=cert.pk, reason="test")
    for client in [*c.values(), Client()]:
        r = client.get("/api/v1/public/certificates/revoked")
        assert r.status_code == 200 and [x["number"] for x in r.json()] == [cert.number]


@case("post", "/api/v1/public/certificates/verify")
def _public_verify(w: World, c: dict[str, Client]) -> None:
    cert = _issue_all(w)["V_W"]
    for client in [*c.values(), Client()]:
        r = client.post("/api/v1/public/certificates/verify", {"payload": cert.payload},
                        content_type="application/json")
        assert r.status_code == 200 and r.json()["valid"] is True and r.json()["certificate"]["number"] == cert.number


def _graded(w: World) -> None:
    from jiliang.supervision.services import credit_regrade

    credit_regrade(actor=w.users["admin"])


def _entity_ids(resp: Any) -> set[int]:
    assert resp.status_code == 200, resp.content
    return {row["entity_id"] for row in resp.json()["items"]}


CREDIT_REGION_VIEWERS = {"admin", "city_regulator", "futian_regulator", "futian_inspector"}


@case("get", "/api/v1/credit/grades")
def _credit_grades(w: World, c: dict[str, Client]) -> None:
    _graded(w)
    graded = w.org_ids("mo_f", "stall_f", "mo_n", "stall_n", "water")
    expected = {"admin": graded, "city_regulator": graded,
                "futian_regulator": w.org_ids("mo_f", "stall_f"), "futian_inspector": w.org_ids("mo_f", "stall_f"),
                "water_user": w.org_ids("water"), "stall_f_user": w.org_ids("stall_f")}
    for name in ALL_USERS:
        assert _entity_ids(c[name].get("/api/v1/credit/grades")) == expected.get(name, set()), name


@case("get", "/api/v1/credit/entities/{org_id}")
def _credit_file(w: World, c: dict[str, Client]) -> None:
    _graded(w)
    for name in ALL_USERS:
        r = c[name].get(f"/api/v1/credit/entities/{w.orgs['stall_f'].pk}")
        ok = name in CREDIT_REGION_VIEWERS or name == "stall_f_user"
        assert r.status_code == (200 if ok else 404), (name, r.content)


def _new_plan(w: World, region: str = "440304", by: str = "admin") -> Any:
    import datetime as dt

    from jiliang.supervision.services import plan_create

    today = dt.date.today()
    return plan_create(actor=w.users[by], name=f"plan {region}", region_code=region, period_start=today,
                       period_end=today, instrument_types=["scale"], shares={"B": 1.0})


PLAN_VIEWERS = {"admin", "city_regulator", "futian_regulator", "futian_inspector"}
PLAN_RUNNERS = {"admin", "city_regulator", "futian_regulator"}


@case("get", "/api/v1/plans")
def _plans(w: World, c: dict[str, Client]) -> None:
    city, futian = _new_plan(w, "440300"), _new_plan(w, "440304")
    expected = {"admin": {city.pk, futian.pk}, "city_regulator": {city.pk, futian.pk},
                "futian_regulator": {futian.pk}, "futian_inspector": {futian.pk}}
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/plans")) == expected.get(name, set()), name


@case("get", "/api/v1/plans/{plan_id}")
def _plan_get(w: World, c: dict[str, Client]) -> None:
    p = _new_plan(w)
    for name in ALL_USERS:
        assert c[name].get(f"/api/v1/plans/{p.pk}").status_code == (200 if name in PLAN_VIEWERS else 404), name


@case("post", "/api/v1/plans")
def _plan_create(w: World, c: dict[str, Client]) -> None:
    import datetime as dt

    today = dt.date.today().isoformat()
    for name in ALL_USERS:
        r = c[name].post("/api/v1/plans", {"name": f"by {name}", "region_code": "440304", "period_start": today,
                                           "period_end": today, "instrument_types": ["scale"]},
                         content_type="application/json")
        assert (r.status_code == 201) == (name in PLAN_RUNNERS), (name, r.content)
        if name not in PLAN_RUNNERS:
            assert r.status_code == 403


def _plan_step(w: World, c: dict[str, Client], step: str) -> None:
    from jiliang.supervision.services import plan_commit, plan_draw

    for name in ALL_USERS:
        p = _new_plan(w)
        if step in ("draw", "publish"):
            plan_commit(actor=w.users["admin"], plan_id=p.pk)
        if step == "publish":
            plan_draw(actor=w.users["admin"], plan_id=p.pk, beacon="b")
        r = c[name].post(f"/api/v1/plans/{p.pk}/{step}", {"beacon": "beacon-x"}, content_type="application/json")
        want = 200 if name in PLAN_RUNNERS else (403 if name in PLAN_VIEWERS else 404)
        assert r.status_code == want, (name, step, r.content)


@case("post", "/api/v1/plans/{plan_id}/commit")
def _plan_commit(w: World, c: dict[str, Client]) -> None:
    _plan_step(w, c, "commit")


@case("post", "/api/v1/plans/{plan_id}/draw")
def _plan_draw(w: World, c: dict[str, Client]) -> None:
    _plan_step(w, c, "draw")


@case("post", "/api/v1/plans/{plan_id}/publish")
def _plan_publish(w: World, c: dict[str, Client]) -> None:
    _plan_step(w, c, "publish")


@case("get", "/api/v1/public/plans/{plan_id}/bundle")
def _plan_bundle(w: World, c: dict[str, Client]) -> None:
    from jiliang.supervision.services import plan_commit, plan_draw, plan_publish

    p = _new_plan(w)
    assert Client().get(f"/api/v1/public/plans/{p.pk}/bundle").status_code == 404  # not published: not public
    plan_commit(actor=w.users["admin"], plan_id=p.pk)
    plan_draw(actor=w.users["admin"], plan_id=p.pk, beacon="b")
    assert Client().get(f"/api/v1/public/plans/{p.pk}/bundle").status_code == 404
    plan_publish(actor=w.users["admin"], plan_id=p.pk)
    for name in [*ALL_USERS, "anonymous"]:
        client = c.get(name) or Client()
        assert client.get(f"/api/v1/public/plans/{p.pk}/bundle").status_code == 200, name


# -------------------------------------------------------------------------------------------------- the tests

def _operations() -> set[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return {(m, p) for p, ops in schema["paths"].items() for m in ops if m in ("get", "post", "patch", "put", "delete")}


def test_every_operation_has_a_permission_case() -> None:
    missing = _operations() - set(CASES)
    assert not missing, f"API operations without a permission case in {__file__}: {sorted(missing)}"
    stale = set(CASES) - _operations()
    assert not stale, f"cases for operations that no longer exist: {sorted(stale)}"


@pytest.fixture
def clients(world: World) -> dict[str, Client]:
    out = {}
    for name, user in world.users.items():
        cl = Client()
        cl.force_login(user)
        out[name] = cl
    return out


@pytest.mark.parametrize("op", sorted(CASES), ids=lambda op: f"{op[0].upper()} {op[1]}")
def test_operation_scope_for_every_role(op: tuple[str, str], world: World, clients: dict[str, Client]) -> None:
    CASES[op](world, clients)


# Operations that are public by design (no sign-in): the certificate check a phone or anyone makes, and the
# keys and revocation list an offline checker needs.  Their cases above check the anonymous answer.
PUBLIC_OPERATIONS.update({("get", "/api/v1/public/keys"), ("get", "/api/v1/public/certificates/revoked"),
                          ("post", "/api/v1/public/certificates/verify"),
                          ("get", "/api/v1/public/plans/{plan_id}/bundle")})


@pytest.mark.parametrize("op", sorted(CASES), ids=lambda op: f"{op[0].upper()} {op[1]}")
def test_anonymous_gets_401_everywhere(op: tuple[str, str], world: World) -> None:
    method, path = op
    url = path.replace("{org_id}", str(world.orgs["stall_f"].pk)).replace(
        "{place_id}", str(world.places["P_F"].pk)).replace("{instrument_id}", str(world.instruments["I_F"].pk)).replace(
        "{kind}", "instruments").replace("{verification_id}", str(world.verifications["V_F"].pk)).replace(
        "{alert_id}", "1").replace("{certificate_id}", "1").replace("{plan_id}", "1")
    url = re.sub(r"\{[a-z_]+\}", "1", url)
    data = json.dumps({}) if method != "get" else None
    r = getattr(Client(), method)(url, content_type="application/json", data=data)
    if op in PUBLIC_OPERATIONS:  # reachable without sign-in (an empty body is refused as invalid, not as 401;
        # a plan that is not published is simply not found)
        assert r.status_code in (200, 404, 422), (op, r.status_code)
        return
    assert r.status_code == 401, (op, r.status_code)
    assert r.json()["error"]["code"] == "unauthenticated"


def test_api_token_sees_only_its_organisation(world: World) -> None:
    _, raw = api_token_create(actor=world.users["admin"], name="meter platform", organization_id=world.orgs["water"].pk,
                              role="utility")
    c = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert ids(c.get("/api/v1/instruments")) == world.ids("I_W")
    assert c.get(f"/api/v1/instruments/{world.instruments['I_F'].pk}").status_code == 404
    assert Client(HTTP_AUTHORIZATION="Bearer jl_not-a-token").get("/api/v1/instruments").status_code == 401


def test_session_writes_need_csrf(world: World) -> None:
    c = Client(enforce_csrf_checks=True)
    c.force_login(world.users["admin"])
    r = c.patch(f"/api/v1/instruments/{world.instruments['I_F'].pk}", {"sw_id": "x"}, content_type="application/json")
    assert r.status_code in (401, 403)
    world.instruments["I_F"].refresh_from_db()
    assert world.instruments["I_F"].sw_id == ""
