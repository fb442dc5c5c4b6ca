"""Services of 二检合一: authorization lifecycle (logged), delivery and acceptance, installation refusal,
supervisory sampling and the penalty ladder end to end with the public list, recall, drift statistics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from jiliang.core.errors import JiliangError, PermissionDenied
from jiliang.core.models import ChangeLog
from jiliang.factory import selectors, services, upload
from jiliang.factory.demo import build_factory_demo
from jiliang.factory.models import Authorization, DeliveryLot, FactoryUnit, PenaltyStep, Recall
from jiliang.registry.models import Instrument
from jiliang.simulation.factory import FactorySpec
from jiliang.verification.models import Verification
from tests.factory.helpers import CONDITIONS, SCOPE, Fx

pytestmark = pytest.mark.django_db


def test_application_is_validated_and_each_transition_logged(world: Any) -> None:
    maker, admin = world.orgs["maker"], world.users["admin"]
    with pytest.raises(JiliangError) as ei:
        services.authorization_apply(actor=world.users["maker_user"], manufacturer_id=maker.pk,
                                     conditions={"standards": "x"}, registered_metrologists=1,
                                     scope=[{"instrument_type": "water_meter", "dn_min": 40, "dn_max": 15}])
    fields = {p.field for p in ei.value.details}
    assert {"conditions.environment", "registered_metrologists", "scope[0].dn_max"} <= fields
    with pytest.raises(PermissionDenied):
        services.authorization_apply(actor=world.users["water_user"], manufacturer_id=maker.pk, conditions=CONDITIONS,
                                     registered_metrologists=3, scope=SCOPE)
    a = services.authorization_apply(actor=world.users["maker_user"], manufacturer_id=maker.pk, conditions=CONDITIONS,
                                     registered_metrologists=3, scope=SCOPE, today=dt.date(2025, 1, 6))
    with pytest.raises(PermissionDenied):  # the manufacturer cannot grant itself; a Futian regulator not Nanshan's
        services.authorization_transition(actor=world.users["maker_user"], authorization_id=a.pk, event="assess")
    with pytest.raises(JiliangError):
        services.authorization_transition(actor=world.users["futian_regulator"], authorization_id=a.pk, event="assess")
    reg = world.users["city_regulator"]
    with pytest.raises(JiliangError, match="under assessment"):
        services.authorization_transition(actor=reg, authorization_id=a.pk, event="grant")
    services.authorization_transition(actor=reg, authorization_id=a.pk, event="assess", today=dt.date(2025, 1, 6))
    a = services.authorization_transition(actor=reg, authorization_id=a.pk, event="grant", note="通过",
                                          today=dt.date(2025, 1, 6))
    assert a.number == f"EJHY-2025-{a.pk:05d}" and str(a.valid_until) == "2028-01-05"
    with pytest.raises(JiliangError, match="window opens on 2027-07-05"):
        services.authorization_transition(actor=world.users["maker_user"], authorization_id=a.pk,
                                          event="apply_renewal", today=dt.date(2027, 1, 1))
    services.authorization_transition(actor=world.users["maker_user"], authorization_id=a.pk, event="apply_renewal",
                                      today=dt.date(2027, 8, 1))
    a = services.authorization_transition(actor=admin, authorization_id=a.pk, event="renew", today=dt.date(2027, 9, 1))
    assert str(a.valid_until) == "2031-01-05"
    logs = list(ChangeLog.objects.filter(model="authorization", object_id=str(a.pk)).order_by("id"))
    assert [entry.action for entry in logs] == ["create", "update", "update", "update", "update"]
    assert logs[2].before["status"] == "assessing" and logs[2].after["status"] == "granted"
    with pytest.raises(JiliangError, match="open application or an authorization"):
        services.authorization_apply(actor=admin, manufacturer_id=maker.pk, conditions=CONDITIONS,
                                     registered_metrologists=3, scope=SCOPE)


def _deliver(fx: Fx, serials: list[str], lot_no: str) -> DeliveryLot:
    return services.lot_deliver(actor=fx.world.users["maker_user"], manufacturer_id=fx.maker.pk,
                                utility_id=fx.world.orgs["water"].pk, lot_no=lot_no, serials=serials)


def test_installation_needs_a_passing_accepted_unit(fx: Fx) -> None:
    w, water = fx.world, fx.world.users["water_user"]
    fail = fx.unit("W-F", conclusion="不合格", points=[{"point": "Q3", "error_pct": 2.5}])
    upload.upload_units(actor=w.users["maker_user"], records=[fx.unit("W1"), fx.unit("W2"), fail])
    kw: dict[str, Any] = {"manufacturer_id": fx.maker.pk, "install_date": dt.date(2025, 4, 1), "reading": 0.0,
                          "address": "南山区花园路 8 号 302"}
    with pytest.raises(JiliangError, match="no factory verification has been uploaded for this unit"):
        services.unit_install(actor=water, serial="NEVER", **kw)
    with pytest.raises(JiliangError, match="has not been delivered to you"):
        services.unit_install(actor=water, serial="W1", **kw)
    with pytest.raises(JiliangError) as ei:
        _deliver(fx, ["W1", "W-F"], "L0")
    assert [(p.field, p.value, p.reason) for p in ei.value.details] == [
        ("serials", "W-F", "the unit failed factory verification")]
    lot = _deliver(fx, ["W1", "W2"], "L1")
    with pytest.raises(JiliangError, match="not accepted; accept its lot first"):
        services.unit_install(actor=water, serial="W1", **kw)
    with pytest.raises(PermissionDenied):
        services.lot_accept(actor=w.users["maker_user"], lot_id=lot.pk)
    services.lot_accept(actor=water, lot_id=lot.pk)
    u = services.unit_install(actor=water, serial="W1", **kw)
    inst = Instrument.objects.get(pk=u.instrument_id)
    assert (inst.status, inst.owner_id, inst.region_id, inst.serial) == ("installed", w.orgs["water"].pk, "440305",
                                                                          "W1")
    assert inst.valid_until == u.valid_until and inst.params["DN_mm"] == 15
    v = Verification.objects.get(instrument=inst)
    assert v.kind == "factory" and v.conforming and len(v.results) == 3
    assert u.install_reading == 0.0 and u.install_address.startswith("南山区")
    with pytest.raises(JiliangError, match="is 已安装"):
        services.unit_install(actor=water, serial="W1", **kw)
    # the failed unit, even if it were delivered, can never be installed
    FactoryUnit.objects.filter(serial="W-F").update(status="accepted", utility=w.orgs["water"])
    with pytest.raises(JiliangError, match="failed factory verification and cannot be installed"):
        services.unit_install(actor=water, serial="W-F", **kw)


def _public(name: str) -> dict[str, Any]:
    r = Client().get("/api/v1/public/factory/authorizations")
    assert r.status_code == 200
    rows = [x for x in r.json() if x["manufacturer"] == name]
    assert len(rows) == 1
    return dict(rows[0])


def _sample_and_fail(fx: Fx, lot_no: str, serials: list[str], fail: bool) -> Any:
    reg = fx.world.users["city_regulator"]
    lot = _deliver(fx, serials, lot_no)
    s = services.sampling_open(actor=reg, lot_id=lot.pk, seed=f"seed-{lot_no}")
    assert s.selected == sorted(s.selected) and len(s.selected) == s.n
    good = [{"point": "Q1", "error_pct": 0.5}, {"point": "Q3", "error_pct": 0.2}]
    bad = [{"point": "Q1", "error_pct": 0.5}, {"point": "Q3", "error_pct": 2.6}]
    results = {k: (bad if fail and i == 0 else good) for i, k in enumerate(s.selected)}
    return services.sampling_record(actor=reg, sampling_id=s.pk, results=results)


def test_penalty_ladder_end_to_end_with_the_public_list(fx: Fx) -> None:
    w = fx.world
    name = fx.maker.name
    upload.upload_units(actor=w.users["maker_user"], records=[fx.unit(f"P{i:03d}") for i in range(200)])
    pub = _public(name)
    assert (pub["status"], pub["penalty_stage"], pub["failures"], pub["sales_stopped"]) == ("granted", "clear", 0,
                                                                                           False)
    assert pub["scope"] == ["water_meter DN15–DN40"] and pub["valid_until"] == "2028-01-05"

    # a passing lot: accepted by sampling, nothing on the ladder
    s = _sample_and_fail(fx, "L-OK", [f"P{i:03d}" for i in range(0, 40)], fail=False)
    assert s.outcome == "passed" and DeliveryLot.objects.get(lot_no="L-OK").status == "passed"

    # 1st failure: the whole lot is returned
    s = _sample_and_fail(fx, "L-1", [f"P{i:03d}" for i in range(40, 80)], fail=True)
    assert (s.outcome, s.defectives) == ("failed", 1)
    assert DeliveryLot.objects.get(lot_no="L-1").status == "returned"
    assert set(FactoryUnit.objects.filter(lot__lot_no="L-1").values_list("status", flat=True)) == {"returned"}
    with pytest.raises(JiliangError, match="cannot be accepted"):
        services.lot_accept(actor=w.users["water_user"], lot_id=DeliveryLot.objects.get(lot_no="L-1").pk)
    pub = _public(name)
    assert (pub["status"], pub["penalty_stage"], pub["failures"]) == ("granted", "batch_returned", 1)

    # 2nd failure: rectification ordered, sales of the model stopped
    _sample_and_fail(fx, "L-2", [f"P{i:03d}" for i in range(80, 120)], fail=True)
    a = Authorization.objects.get(pk=fx.auth.pk)
    assert (a.penalty_stage, a.failures, a.stopped_models) == ("rectifying", 2, [fx.model.pk])
    pub = _public(name)
    assert (pub["status"], pub["penalty_stage"], pub["sales_stopped"]) == ("granted", "rectifying", True)
    with pytest.raises(JiliangError, match="sales of this model are stopped"):
        _deliver(fx, ["P150"], "L-STOP")
    lot_ok = DeliveryLot.objects.get(lot_no="L-OK")
    with pytest.raises(JiliangError, match="stopped during rectification"):
        services.lot_accept(actor=w.users["water_user"], lot_id=lot_ok.pk)

    # rectification failed: the pilot is suspended and published
    with pytest.raises(PermissionDenied):
        services.rectification_record(actor=w.users["maker_user"], authorization_id=a.pk, passed=True)
    services.rectification_record(actor=w.users["city_regulator"], authorization_id=a.pk, passed=False,
                                  note="复查不合格")
    pub = _public(name)
    assert (pub["status"], pub["penalty_stage"]) == ("suspended", "suspended")
    assert "rectification failed" in pub["reason"]
    with pytest.raises(JiliangError) as ei:
        upload.upload_units(actor=w.users["maker_user"], records=[fx.unit("P900")])
    assert "the authorization is suspended" in ei.value.details[0].reason

    # 3rd failure: the qualification is revoked (lots delivered before the suspension are still sampled)
    FactoryUnit.objects.filter(serial__in=[f"P{i:03d}" for i in range(120, 160)]).update(status="in_stock")
    Authorization.objects.filter(pk=a.pk).update(stopped_models=[])  # allow the delivery of an older batch
    _sample_and_fail(fx, "L-3", [f"P{i:03d}" for i in range(120, 160)], fail=True)
    pub = _public(name)
    assert (pub["status"], pub["penalty_stage"], pub["failures"]) == ("revoked", "revoked", 3)
    assert "failed sampling 3 times" in pub["reason"]
    steps = list(PenaltyStep.objects.filter(authorization=a).values_list("from_stage", "to_stage"))
    assert steps == [("clear", "batch_returned"), ("batch_returned", "rectifying"), ("rectifying", "suspended"),
                     ("suspended", "revoked")]
    assert ChangeLog.objects.filter(model="authorization", object_id=str(a.pk)).count() == 3 + 4  # apply/assess/grant
    with pytest.raises(JiliangError, match="revoked"):
        services.rectification_record(actor=w.users["city_regulator"], authorization_id=a.pk, passed=True)


def test_rectification_passed_resumes_sales(fx: Fx) -> None:
    upload.upload_units(actor=fx.world.users["maker_user"], records=[fx.unit(f"R{i:03d}") for i in range(60)])
    _sample_and_fail(fx, "L-1", [f"R{i:03d}" for i in range(0, 20)], fail=True)
    _sample_and_fail(fx, "L-2", [f"R{i:03d}" for i in range(20, 40)], fail=True)
    a = services.rectification_record(actor=fx.world.users["admin"], authorization_id=fx.auth.pk, passed=True)
    assert (a.penalty_stage, a.stopped_models, a.status) == ("rectified", [], "granted")
    assert _deliver(fx, ["R050"], "L-AFTER").status == "delivered"


def test_recall_marks_the_batch_and_tracks_replacement(fx: Fx) -> None:
    maker = fx.world.users["maker_user"]
    upload.upload_units(actor=maker, records=[fx.unit(f"K{i}", batch="BAD") for i in range(4)]
                        + [fx.unit("NEW1", batch="GOOD")])
    with pytest.raises(PermissionDenied):
        services.recall_open(actor=fx.world.users["water_user"], manufacturer_id=fx.maker.pk, model_id=fx.model.pk,
                             batch="BAD", reason="Q3 偏正")
    r = services.recall_open(actor=maker, manufacturer_id=fx.maker.pk, model_id=fx.model.pk, batch="BAD",
                             reason="Q3 系统性偏正")
    assert r.units == 4 and FactoryUnit.objects.filter(batch="BAD", status="recalled").count() == 4
    with pytest.raises(JiliangError, match="must be a verified, conforming unit in stock"):
        services.recall_replace(actor=maker, recall_id=r.pk, serial="K0", replacement_serial="K1")
    r = services.recall_replace(actor=maker, recall_id=r.pk, serial="K0", replacement_serial="NEW1")
    assert r.replaced == 1 and FactoryUnit.objects.get(serial="K0").replaced_by.serial == "NEW1"
    with pytest.raises(JiliangError, match="already been replaced"):
        services.recall_replace(actor=maker, recall_id=r.pk, serial="K0", replacement_serial="NEW1")
    assert Recall.objects.get().replaced == 1


def test_simulated_drifting_manufacturer_is_flagged(world: Any) -> None:
    spec = FactorySpec(manufacturers=3, batches=6, units_per_batch=150, drifting=1)
    demo = build_factory_demo(actor=world.users["admin"], spec=spec, seed=4, utility_uscc=world.orgs["water"].uscc)
    assert demo.created_units == 3 * 6 * 150
    rows = selectors.batch_stats(principal=world.users["admin"])
    assert len(rows) == 3 * 6 * 3
    flagged = selectors.drifting_manufacturers(rows)
    drifting = Authorization.objects.get(manufacturer__uscc=demo.world.drifting_uscc).manufacturer_id
    assert set(flagged) == {drifting}, flagged
    # the mean of each batch recovers the ground-truth bias within a few standard errors
    for r in rows:
        maker = next(m["uscc"] for m in demo.world.manufacturers if m["name"] == r.manufacturer)
        truth = demo.world.bias[(maker, r.batch, r.point)]
        assert abs(r.test.mean - truth) < 5 * r.test.std / r.test.n ** 0.5 + 0.02, (r.batch, r.point)
    assert demo.sampling is not None and demo.sampling.n > 0 and demo.lot is not None
    # the world's regulator of Futian supervises none of these (宝安) manufacturers
    assert selectors.batch_stats(principal=world.users["futian_regulator"]) == []


@pytest.mark.parametrize("event", ["suspend", "revoke"])
def test_suspension_and_revocation_need_a_reason_in_the_service(fx: Fx, event: str) -> None:
    """Not only the page: an API or script caller must give the reason that the public list shows."""
    before = Authorization.objects.get(pk=fx.auth.pk).status
    with pytest.raises(JiliangError) as exc:
        services.authorization_transition(actor=fx.world.users["admin"], authorization_id=fx.auth.pk, event=event,
                                          note=" ")
    assert exc.value.details[0].field == "note"
    assert Authorization.objects.get(pk=fx.auth.pk).status == before
    a = services.authorization_transition(actor=fx.world.users["admin"], authorization_id=fx.auth.pk, event=event,
                                          note="监督抽查连续不合格")
    assert a.reason == "监督抽查连续不合格"
