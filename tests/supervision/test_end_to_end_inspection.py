"""Issue 5 end to end, extending tests/supervision/test_supervision.py's chain past the draw: cheating seen by a
detector → alert confirmed → credit event → grade falls → the next plan draws the entity → two inspectors are
drawn → one records a failing spot-check on the phone form's service → a case opens with its legal basis →
the rectification is reported and confirmed → the task completes → draw and results are published → the
public sees the outcome → the grade recovers as the events age."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from jiliang.engine import pairing
from jiliang.engine.draw import verify
from jiliang.monitoring.detection import alert_decide, run_detectors
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert
from jiliang.registry.models import Instrument
from jiliang.supervision.models import Case, CreditEvent, CreditGrade, InspectionTask
from jiliang.supervision.services import (
    case_rectify,
    credit_regrade,
    finding_record,
    plan_bundle,
    plan_commit,
    plan_create,
    plan_draw,
    plan_publish,
    results_publish,
    task_complete,
)
from tests.supervision.inspection_setup import SCALE_BAD, make_inspectors
from tests.world import World

pytestmark = pytest.mark.django_db
TODAY = dt.date.today()
CHEAT = ('{"kind":"scale.txn","device":"SC-F-1","ts":"2026-11-01T08:00:00+08:00","seq":1,"net_g":1000,'
         '"tare_g":0,"unit_price_fen_per_kg":1500,"amount_fen":1800}')


def grade(world: World) -> CreditGrade:
    return CreditGrade.objects.get(entity=world.orgs["stall_f"])


def test_alert_to_grade_to_draw_to_case_to_publication_to_recovery(world: World) -> None:
    reg = world.users["city_regulator"]
    stall = world.orgs["stall_f"]
    make_inspectors("440305", 2, prefix="ns")  # the city's pool: futian_inspector and two Nanshan inspectors

    # 1. a detector sees price × weight ≠ amount; the regulator confirms → credit event → grade C
    ingest_lines([CHEAT.encode()], source="t")
    run_detectors()
    alert = Alert.objects.get()
    alert_decide(actor=reg, alert_id=alert.pk, status="confirmed", reason="复秤核实")
    assert CreditEvent.objects.filter(entity=stall, kind="alert_confirmed", source=f"alert:{alert.pk}").exists()
    credit_regrade(actor=reg)
    assert (grade(world).grade, grade(world).score) == ("C", pytest.approx(60.0))

    # 2. the next plan inspects 60 % of C entities and no B entity: the stall is drawn, with two inspectors
    plan = plan_create(actor=reg, name="2026年第四季度计价秤双随机抽查", region_code="440300", period_start=TODAY,
                       period_end=TODAY + dt.timedelta(days=30), instrument_types=["scale"],
                       shares={"A": 0.05, "B": 0.0, "C": 0.6, "D": 1.0})
    plan_commit(actor=reg, plan_id=plan.pk)
    plan = plan_draw(actor=reg, plan_id=plan.pk, beacon="2026-11-23 national time service beacon 8f3a")
    assert plan.selected == [stall.uscc]
    task = InspectionTask.objects.get(plan=plan)
    assert task.entity == stall and task.status == "assigned" and len(task.inspector_ids) == 2
    inspector = task.inspector_1
    assert inspector is not None

    # 3. on site: the test point at Max is 12 g off (MPE 7.5 g) → nonconforming → case, credit event
    finding = finding_record(actor=inspector, task_id=task.pk, instrument_id=world.instruments["I_F"].pk,
                             present=True, seal_intact=True, points=SCALE_BAD, note="最大秤量点超差")
    assert not finding.conforming
    inst = Instrument.objects.get(pk=world.instruments["I_F"].pk)
    assert inst.last_verification_conforming is False and inst.valid_until is None  # no longer valid
    case = Case.objects.get()
    assert case.status == "open" and "计量法" in case.legal_basis and case.deadline > TODAY
    assert CreditEvent.objects.filter(entity=stall, kind="spot_check_failed", source=f"task:{task.pk}").exists()
    credit_regrade(actor=reg)
    assert grade(world).grade == "D" and grade(world).score == pytest.approx(45.0)

    # 4. the stall reports its rectification; the regulator confirms it and the case closes
    assert case_rectify(actor=world.users["stall_f_user"], case_id=case.pk, note="已停用并送检").status == "rectified"
    assert case_rectify(actor=reg, case_id=case.pk, note="复查：检定合格后重新使用").status == "closed"
    assert CreditEvent.objects.filter(entity=stall, kind="rectification_done", source=f"case:{case.pk}").exists()
    task = task_complete(actor=task.inspector_2, task_id=task.pk, summary="1 台不合格，已整改")
    assert task.conclusion == "nonconforming"

    # 5. publish the draw (verifiable, pairing included) and the results (一公开)
    plan = plan_publish(actor=reg, plan_id=plan.pk)
    bundle = plan_bundle(plan)
    assert verify(bundle).ok and pairing.verify(bundle["pairing"], seed_hex=plan.seed_hex) == []
    results_publish(actor=reg, plan_id=plan.pk)
    body = Client().get(f"/api/v1/public/plans/{plan.pk}/results").json()
    assert body["results"] == [{"uscc": stall.uscc, "name": stall.name, "inspected_on": TODAY.isoformat(),
                                "conclusion": "nonconforming", "case_outcome": "rectified"}]
    page = Client().get(f"/public/plans/{plan.pk}/").content.decode()
    assert stall.name in page and "已整改" in page and inspector.username not in page

    # 6. the grade recovers as the events age (half-life 365 days for all three)
    credit_regrade(actor=reg)
    assert grade(world).grade == "D" and grade(world).score == pytest.approx(50.0)  # 80 - 20 - 15 + 5
    credit_regrade(actor=reg, today=TODAY + dt.timedelta(days=730))
    assert grade(world).grade == "C" and grade(world).score == pytest.approx(72.5)
    credit_regrade(actor=reg, today=TODAY + dt.timedelta(days=1095))
    assert grade(world).grade == "B" and grade(world).score == pytest.approx(76.25)
