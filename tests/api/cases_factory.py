"""Permission cases for the factory-verification API (二检合一).  The world's manufacturer "maker" and utility
"water" are in 南山 (440305): the city regulator supervises them, the Futian regulator, inspector and
institute do not; the maker's user acts for the manufacturer, the water user for the utility."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from jiliang.factory import services, upload
from jiliang.factory.models import Authorization, DeliveryLot, FactoryUnit, Recall, Sampling
from jiliang.registry.models import InstrumentModel
from tests.api.permcases import ALL_USERS, PUBLIC_OPERATIONS, case, ids
from tests.factory.helpers import CONDITIONS, SCOPE, Fx, grant
from tests.world import World

PUBLIC_OPERATIONS.add(("get", "/api/v1/public/factory/authorizations"))

SUPERVISE = {"admin", "city_regulator"}  # may decide for the maker (南山)
SEE_MAKER = {"admin", "city_regulator", "maker_user"}


def _fx(w: World) -> Fx:
    auth = Authorization.objects.filter(manufacturer=w.orgs["maker"], status="granted").first() or grant(w)
    return Fx(world=w, auth=auth, model=InstrumentModel.objects.get(maker=w.orgs["maker"], name="LXS-15"))


def _units(fx: Fx, *serials: str) -> None:
    upload.upload_units(actor=fx.world.users["admin"], records=[fx.unit(s) for s in serials])


def _lot(fx: Fx, lot_no: str, *serials: str, accept: bool = False) -> DeliveryLot:
    _units(fx, *serials)
    lot = services.lot_deliver(actor=fx.world.users["admin"], manufacturer_id=fx.maker.pk,
                               utility_id=fx.world.orgs["water"].pk, lot_no=lot_no, serials=list(serials))
    if accept:
        services.lot_accept(actor=fx.world.users["admin"], lot_id=lot.pk)
    return lot


def _post(c: Client, url: str, body: Any) -> Any:
    return c.post(url, body, content_type="application/json")


@case("get", "/api/v1/public/factory/authorizations")
def _public_list(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    for name in [*ALL_USERS, "anonymous"]:
        r = (c.get(name) or Client()).get("/api/v1/public/factory/authorizations")
        assert r.status_code == 200, name
        assert [x["id"] for x in r.json()] == [fx.auth.pk], name
        assert r.json()[0]["scope"] == ["water_meter DN15–DN40"]
        assert "conditions" not in r.json()[0]  # the evidence is not public


@case("get", "/api/v1/factory/authorizations")
def _auth_list(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    for name in ALL_USERS:
        want = {fx.auth.pk} if name in SEE_MAKER else set()
        assert ids(c[name].get("/api/v1/factory/authorizations")) == want, name


@case("post", "/api/v1/factory/authorizations")
def _auth_apply(w: World, c: dict[str, Client]) -> None:
    body = {"manufacturer_id": w.orgs["maker"].pk, "conditions": CONDITIONS, "registered_metrologists": 3,
            "scope": SCOPE}
    for name in ALL_USERS:
        if name in ("admin", "maker_user"):
            continue
        assert _post(c[name], "/api/v1/factory/authorizations", body).status_code == 403, name
    assert not Authorization.objects.exists()
    r = _post(c["maker_user"], "/api/v1/factory/authorizations", body)
    assert r.status_code == 201 and r.json()["status"] == "applied", r.content
    assert _post(c["admin"], "/api/v1/factory/authorizations", body).status_code == 409  # one open application


@case("post", "/api/v1/factory/authorizations/{auth_id}/transition")
def _auth_transition(w: World, c: dict[str, Client]) -> None:
    a = services.authorization_apply(actor=w.users["admin"], manufacturer_id=w.orgs["maker"].pk, conditions=CONDITIONS,
                                     registered_metrologists=3, scope=SCOPE)
    url = f"/api/v1/factory/authorizations/{a.pk}/transition"
    for name in ALL_USERS:
        if name in SUPERVISE:
            continue
        want = 403 if name == "maker_user" else 404
        assert _post(c[name], url, {"event": "assess"}).status_code == want, name
    assert Authorization.objects.get(pk=a.pk).status == "applied"
    assert _post(c["city_regulator"], url, {"event": "assess"}).status_code == 200
    assert _post(c["admin"], url, {"event": "grant"}).json()["status"] == "granted"
    # the manufacturer's own event: renewal is not open yet (400-family refusal, not a permission error)
    assert _post(c["maker_user"], url, {"event": "apply_renewal"}).status_code == 409
    assert _post(c["city_regulator"], url, {"event": "apply_renewal"}).status_code == 403


@case("post", "/api/v1/factory/authorizations/{auth_id}/rectification")
def _rectification(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    Authorization.objects.filter(pk=fx.auth.pk).update(penalty_stage="rectifying", failures=2)
    url = f"/api/v1/factory/authorizations/{fx.auth.pk}/rectification"
    for name in ALL_USERS:
        if name in SUPERVISE:
            continue
        want = 403 if name == "maker_user" else 404
        assert _post(c[name], url, {"passed": True}).status_code == want, name
    assert Authorization.objects.get(pk=fx.auth.pk).penalty_stage == "rectifying"
    r = _post(c["city_regulator"], url, {"passed": True})
    assert r.status_code == 200 and r.json()["penalty_stage"] == "rectified"
    assert _post(c["admin"], url, {"passed": True}).status_code == 409  # nothing to judge any more


@case("post", "/api/v1/factory/units")
def _upload_json(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    for name in ALL_USERS:
        r = _post(c[name], "/api/v1/factory/units", [fx.unit(f"PJ-{name}")])
        stored = FactoryUnit.objects.filter(serial=f"PJ-{name}").exists()
        if name in ("admin", "maker_user"):
            assert r.status_code == 200 and r.json()["created"] == 1 and stored, (name, r.content)
        else:
            assert r.status_code == 400 and not stored, name
            assert r.json()["error"]["details"][0]["field"] == "maker", name


def _csv(fx: Fx, serial: str) -> bytes:
    rec = fx.unit(serial)
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(rec))
    wr.writeheader()
    wr.writerow({k: json.dumps(v) if k == "points" else v for k, v in rec.items()})
    return buf.getvalue().encode()


@case("post", "/api/v1/factory/units/file")
def _upload_file(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    for name in ALL_USERS:
        r = c[name].post("/api/v1/factory/units/file", {"file": SimpleUploadedFile("u.csv", _csv(fx, f"PF-{name}"))})
        stored = FactoryUnit.objects.filter(serial=f"PF-{name}").exists()
        assert (r.status_code == 200) == (name in ("admin", "maker_user")) == stored, (name, r.content)


@case("get", "/api/v1/factory/units")
def _unit_list(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    _units(fx, "U1", "U2")
    pks = set(FactoryUnit.objects.values_list("pk", flat=True))
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/factory/units")) == (pks if name in SEE_MAKER else set()), name
    _lot(fx, "L-U", "U3")  # delivered to the water utility: now it sees that unit
    assert ids(c["water_user"].get("/api/v1/factory/units")) == {FactoryUnit.objects.get(serial="U3").pk}


@case("get", "/api/v1/factory/batches")
def _batches(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    _units(fx, "S1", "S2", "S3")
    for name in ALL_USERS:
        r = c[name].get("/api/v1/factory/batches")
        assert r.status_code == 200, name
        assert len(r.json()) == (3 if name in SEE_MAKER else 0), name  # one batch × Q1, Q2, Q3
    row = next(x for x in c["admin"].get("/api/v1/factory/batches").json() if x["point"] == "Q1")
    assert row["n"] == 3 and row["mean"] == 1.0 and row["mpe"] == 5.0


@case("post", "/api/v1/factory/units/install")
def _install(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    _lot(fx, "L-I", "I1", "I2", accept=True)
    body = {"manufacturer_id": fx.maker.pk, "serial": "I1", "install_date": "2025-04-01", "reading": 1.5,
            "address": "南山区花园路 8 号"}
    for name in ALL_USERS:
        if name in ("admin", "water_user"):
            continue
        assert _post(c[name], "/api/v1/factory/units/install", body).status_code == 404, name
    assert FactoryUnit.objects.get(serial="I1").status == "accepted"
    r = _post(c["water_user"], "/api/v1/factory/units/install", body)
    assert r.status_code == 200 and r.json()["status"] == "installed", r.content
    assert _post(c["admin"], "/api/v1/factory/units/install", {**body, "serial": "I2"}).status_code == 200


@case("get", "/api/v1/factory/lots")
def _lot_list(w: World, c: dict[str, Client]) -> None:
    lot = _lot(_fx(w), "L-V", "V1")
    for name in ALL_USERS:
        want = {lot.pk} if name in SEE_MAKER | {"water_user"} else set()
        assert ids(c[name].get("/api/v1/factory/lots")) == want, name


@case("post", "/api/v1/factory/lots")
def _lot_deliver(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    _units(fx, "D1", "D2")
    for name in ALL_USERS:
        body = {"manufacturer_id": fx.maker.pk, "utility_id": w.orgs["water"].pk, "lot_no": f"L-{name}",
                "serials": ["D1"] if name != "admin" else ["D2"]}
        r = _post(c[name], "/api/v1/factory/lots", body)
        made = DeliveryLot.objects.filter(lot_no=f"L-{name}").exists()
        assert (r.status_code == 201) == (name in ("admin", "maker_user")) == made, (name, r.content)


@case("post", "/api/v1/factory/lots/{lot_id}/accept")
def _lot_accept(w: World, c: dict[str, Client]) -> None:
    lot = _lot(_fx(w), "L-A", "A1")
    url = f"/api/v1/factory/lots/{lot.pk}/accept"
    for name in ALL_USERS:
        if name in ("admin", "water_user"):
            continue
        want = 403 if name in SEE_MAKER else 404
        assert c[name].post(url).status_code == want, name
    assert DeliveryLot.objects.get(pk=lot.pk).status == "delivered"
    assert c["water_user"].post(url).json()["status"] == "accepted"
    assert c["admin"].post(url).status_code == 409


@case("post", "/api/v1/factory/samplings")
def _sampling_open(w: World, c: dict[str, Client]) -> None:
    lot = _lot(_fx(w), "L-S", *[f"SS{i}" for i in range(10)])
    for name in ALL_USERS:
        if name in SUPERVISE:
            continue
        want = 403 if name in ("maker_user", "water_user") else 404
        assert _post(c[name], "/api/v1/factory/samplings", {"lot_id": lot.pk}).status_code == want, name
    assert not Sampling.objects.exists()
    r = _post(c["city_regulator"], "/api/v1/factory/samplings", {"lot_id": lot.pk, "seed": "s"})
    assert r.status_code == 201 and len(r.json()["selected"]) == r.json()["n"], r.content
    assert _post(c["admin"], "/api/v1/factory/samplings", {"lot_id": lot.pk}).status_code == 409


@case("post", "/api/v1/factory/samplings/{sampling_id}/results")
def _sampling_results(w: World, c: dict[str, Client]) -> None:
    lot = _lot(_fx(w), "L-R", *[f"SR{i}" for i in range(5)])
    s = services.sampling_open(actor=w.users["admin"], lot_id=lot.pk, seed="x")
    body = {"results": {k: [{"point": "Q3", "error_pct": 0.1}] for k in s.selected}}
    url = f"/api/v1/factory/samplings/{s.pk}/results"
    for name in ALL_USERS:
        if name in SUPERVISE:
            continue
        want = 403 if name == "maker_user" else 404
        assert _post(c[name], url, body).status_code == want, name
    r = _post(c["city_regulator"], url, body)
    assert r.status_code == 200 and r.json()["outcome"] == "passed", r.content
    assert _post(c["admin"], url, body).status_code == 409


@case("get", "/api/v1/factory/recalls")
def _recall_list(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    _units(fx, "RC1")
    r = services.recall_open(actor=w.users["admin"], manufacturer_id=fx.maker.pk, model_id=fx.model.pk, batch="B1",
                             reason="偏差")
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/factory/recalls")) == ({r.pk} if name in SEE_MAKER else set()), name


@case("post", "/api/v1/factory/recalls")
def _recall_open(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    _units(fx, "RO1")
    body = {"manufacturer_id": fx.maker.pk, "model_id": fx.model.pk, "batch": "B1", "reason": "Q3 系统性偏正"}
    for name in ALL_USERS:
        if name in SEE_MAKER:
            continue
        assert _post(c[name], "/api/v1/factory/recalls", body).status_code == 403, name
    assert not Recall.objects.exists()
    assert _post(c["maker_user"], "/api/v1/factory/recalls", body).status_code == 201
    assert _post(c["city_regulator"], "/api/v1/factory/recalls", body).status_code == 409  # already recalled


@case("post", "/api/v1/factory/recalls/{recall_id}/replace")
def _recall_replace(w: World, c: dict[str, Client]) -> None:
    fx = _fx(w)
    _units(fx, "RR1", "RR2")
    upload.upload_units(actor=w.users["admin"], records=[fx.unit("NEW1", batch="B2"), fx.unit("NEW2", batch="B2")])
    r = services.recall_open(actor=w.users["admin"], manufacturer_id=fx.maker.pk, model_id=fx.model.pk, batch="B1",
                             reason="偏差")
    url = f"/api/v1/factory/recalls/{r.pk}/replace"
    for name in ALL_USERS:
        if name in ("admin", "maker_user"):
            continue
        want = 403 if name == "city_regulator" else 404
        assert _post(c[name], url, {"serial": "RR1", "replacement_serial": "NEW1"}).status_code == want, name
    assert _post(c["maker_user"], url, {"serial": "RR1", "replacement_serial": "NEW1"}).json()["replaced"] == 1
    assert _post(c["admin"], url, {"serial": "RR2", "replacement_serial": "NEW2"}).json()["replaced"] == 2
