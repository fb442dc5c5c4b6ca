"""Credit files and grades; inspection plans from commitment to publication; alert -> grade -> draw."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client

from jiliang.core.errors import JiliangError, PermissionDenied
from jiliang.core.models import ChangeLog
from jiliang.engine.draw import verify
from jiliang.monitoring.detection import alert_decide, run_detectors
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert
from jiliang.supervision.models import CreditEvent, CreditGrade, InspectionPlan
from jiliang.supervision.services import (
    credit_event_record,
    credit_regrade,
    plan_bundle,
    plan_commit,
    plan_create,
    plan_draw,
    plan_publish,
)
from tests.world import World

pytestmark = pytest.mark.django_db
TODAY = dt.date.today()


def test_credit_events_are_recorded_once_and_validated(world: World) -> None:
    admin = world.users["admin"]
    e1 = credit_event_record(actor=admin, entity_id=world.orgs["stall_f"].pk, kind="spot_check_failed",
                             occurred_on=TODAY, source="spot_check:1")
    e2 = credit_event_record(actor=admin, entity_id=world.orgs["stall_f"].pk, kind="spot_check_failed",
                             occurred_on=TODAY, source="spot_check:1")
    assert e1.pk == e2.pk and CreditEvent.objects.count() == 1
    with pytest.raises(JiliangError):
        credit_event_record(actor=admin, entity_id=world.orgs["stall_f"].pk, kind="bribery", occurred_on=TODAY,
                            source="x")
    with pytest.raises(JiliangError):
        credit_event_record(actor=admin, entity_id=world.orgs["stall_f"].pk, kind="alert_confirmed",
                            occurred_on=TODAY + dt.timedelta(days=1), source="y")


def test_regrade_scores_every_market_entity_and_logs_grade_changes(world: World) -> None:
    admin = world.users["admin"]
    report = credit_regrade(actor=admin)
    assert report.by_grade["B"] == report.entities >= 4  # base 80 = B without events
    for src in ("a:1", "a:2"):
        credit_event_record(actor=admin, entity_id=world.orgs["stall_f"].pk, kind="alert_confirmed",
                            occurred_on=TODAY, source=src)
    credit_regrade(actor=admin)
    g = CreditGrade.objects.get(entity=world.orgs["stall_f"])
    assert g.grade == "D" and g.score == pytest.approx(40.0) and g.events == 2
    assert ChangeLog.objects.filter(model="creditgrade", object_id=str(g.pk), action="update").exists()
    # the event ages: a year later its weight has halved (half-life 365 days)
    credit_regrade(actor=admin, today=TODAY + dt.timedelta(days=365))
    assert CreditGrade.objects.get(entity=world.orgs["stall_f"]).score == pytest.approx(60.0)


def _plan(world: World) -> InspectionPlan:
    return plan_create(actor=world.users["city_regulator"], name="2026年第四季度计价秤双随机抽查",
                       region_code="440300",
                       period_start=TODAY, period_end=TODAY + dt.timedelta(days=30), instrument_types=["scale"],
                       shares={"A": 0.05, "B": 0.0, "C": 0.6, "D": 1.0})


def test_plan_lifecycle_and_the_published_bundle_verifies(world: World) -> None:
    reg = world.users["city_regulator"]
    plan = _plan(world)
    with pytest.raises(JiliangError):
        plan_draw(actor=reg, plan_id=plan.pk, beacon="b")          # not committed yet
    plan = plan_commit(actor=reg, plan_id=plan.pk)
    assert {e["id"] for e in plan.frame} == {world.orgs["stall_f"].uscc, world.orgs["stall_n"].uscc}
    assert len(plan.frame_hash) == 64 and plan.secret_hex
    with pytest.raises(JiliangError):
        plan_commit(actor=reg, plan_id=plan.pk)                     # the frame is frozen
    with pytest.raises(JiliangError):
        plan_bundle(plan)                                           # nothing public before publication
    plan = plan_draw(actor=reg, plan_id=plan.pk, beacon="2026-11-23 national time service beacon 8f3a")
    assert plan.selected == []  # everyone is B (share 0) before any event
    plan = plan_publish(actor=reg, plan_id=plan.pk)
    bundle = plan_bundle(plan)
    assert verify(bundle).ok
    bundle["frame"][0]["grade"] = "D"
    assert not verify(bundle).ok
    logs = ChangeLog.objects.filter(model="inspectionplan", object_id=str(plan.pk))
    assert logs.count() == 4 and all("secret_hex" not in (x.after or {}) for x in logs)


def test_only_regulators_run_plans_in_their_region(world: World) -> None:
    with pytest.raises(PermissionDenied):
        plan_create(actor=world.users["futian_regulator"], name="x", region_code="440305", period_start=TODAY,
                    period_end=TODAY, instrument_types=[])
    with pytest.raises(PermissionDenied):
        plan_create(actor=world.users["futian_inspector"], name="x", region_code="440304", period_start=TODAY,
                    period_end=TODAY, instrument_types=[])


def test_confirmed_alert_lowers_the_grade_and_the_next_plan_draws_the_entity(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's end-to-end chain, up to the draw: cheating seen by a detector -> confirmed -> credit
    event -> grade D -> drawn by a plan that inspects every D entity."""
    reg = world.users["city_regulator"]
    line = ('{"kind":"scale.txn","device":"SC-F-1","ts":"2026-11-01T08:00:00+08:00","seq":1,"net_g":1000,'
            '"tare_g":0,"unit_price_fen_per_kg":1500,"amount_fen":1800}')
    ingest_lines([line.encode()], source="t")
    run_detectors()
    alert = Alert.objects.get()
    alert_decide(actor=reg, alert_id=alert.pk, status="confirmed", reason="复秤核实")
    alert2_source = f"alert:{alert.pk}"
    assert CreditEvent.objects.filter(entity=world.orgs["stall_f"], kind="alert_confirmed",
                                      source=alert2_source).exists()
    credit_event_record(actor=reg, entity_id=world.orgs["stall_f"].pk, kind="case_penalty", occurred_on=TODAY,
                        source="case:1")
    credit_regrade(actor=reg)
    assert CreditGrade.objects.get(entity=world.orgs["stall_f"]).grade == "D"
    plan = plan_commit(actor=reg, plan_id=_plan(world).pk)
    plan = plan_draw(actor=reg, plan_id=plan.pk, beacon="beacon")
    assert plan.selected == [world.orgs["stall_f"].uscc]
    plan_publish(actor=reg, plan_id=plan.pk)
    from jiliang.cli import main

    assert main(["draw", "verify", str(plan.pk)]) == 0
    assert "verified" in capsys.readouterr().out
    body = Client().get(f"/api/v1/public/plans/{plan.pk}/bundle").json()
    assert verify(body).ok and json.dumps(body)  # public, no login
