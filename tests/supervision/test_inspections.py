"""Inspection tasks (检查任务), findings and spot-checks (抽查检定), cases (案件), conflicts (利益冲突声明) and the
publication of results (一公开): services and selectors against the hand-written world."""

from __future__ import annotations

import datetime as dt

import pytest

from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.core.models import ChangeLog
from jiliang.engine import pairing
from jiliang.registry.models import Instrument
from jiliang.supervision import selectors
from jiliang.supervision.models import Case, CreditEvent, Finding, InspectionTask
from jiliang.supervision.services import (
    case_escalate_overdue,
    case_rectify,
    case_rules,
    conflict_declare,
    finding_record,
    plan_bundle,
    plan_publish,
    results_publish,
    spot_check_institution,
    task_complete,
)
from jiliang.verification.models import Verification
from tests.supervision.inspection_setup import SCALE_BAD, SCALE_OK, drawn_plan, make_inspectors
from tests.world import World

pytestmark = pytest.mark.django_db
TODAY = dt.date.today()


def futian_task(world: World, extra_inspectors: int = 2, beacon: str = "b1") -> InspectionTask:
    """A Futian plan over scales: the frame is 张三水产店 (stall_f) alone, drawn with share 100 %."""
    if extra_inspectors:
        make_inspectors("440304", extra_inspectors, prefix=f"x{beacon}")
    plan = drawn_plan(world.users["futian_regulator"], "440304", beacon=beacon)
    return InspectionTask.objects.get(plan=plan)


def inspector_of(task: InspectionTask) -> object:
    assert task.inspector_1 is not None
    return task.inspector_1


# ------------------------------------------------------------------------------------------ the draw of inspectors

def test_drawing_a_plan_creates_a_task_with_two_inspectors_and_a_verifiable_pairing(world: World) -> None:
    task = futian_task(world)
    assert task.entity == world.orgs["stall_f"] and task.status == "assigned"
    pool = set(InspectionTask._meta.get_field("inspector_1").related_model.objects.filter(
        role="inspector", region_id="440304").values_list("pk", flat=True))
    assert len(pool) == 3 and task.inspector_ids <= pool and len(task.inspector_ids) == 2
    plan = task.plan
    assert plan.pairing["algorithm"] == pairing.ALGORITHM
    assert plan.pairing["targets"] == [world.orgs["stall_f"].uscc]
    assert pairing.verify(plan.pairing, seed_hex=plan.seed_hex) == []
    assert ChangeLog.objects.filter(model="inspectiontask", object_id=str(task.pk), action="create").exists()
    # the pairing is part of the public bundle, by opaque ids only (no names)
    bundle = plan_bundle(plan_publish(actor=world.users["futian_regulator"], plan_id=plan.pk))
    assert bundle["pairing"] == plan.pairing
    assert "futian_inspector" not in str(bundle)


def test_fewer_than_two_inspectors_leaves_the_task_unassigned_with_the_reason(world: World) -> None:
    task = futian_task(world, extra_inspectors=0)  # only futian_inspector in 440304
    assert task.status == "unassigned" and task.inspector_1 is None and task.inspector_2 is None
    assert task.unassigned_reason == pairing.FEWER_THAN_TWO
    assert "不足两名" in selectors.unassigned_reason_text(task.unassigned_reason)


def test_declared_conflicts_are_never_drawn(world: World) -> None:
    others = make_inspectors("440304", 2, prefix="c")
    conflicted = world.users["futian_inspector"]
    d = conflict_declare(actor=conflicted, organization_id=world.orgs["stall_f"].pk, reason="配偶经营该摊位")
    assert d.inspector == conflicted and d.declared_by == "futian_inspector"
    # declaring twice returns the first declaration
    assert conflict_declare(actor=conflicted, organization_id=world.orgs["stall_f"].pk, reason="x").pk == d.pk
    for beacon in ("b1", "b2", "b3", "b4"):
        task = InspectionTask.objects.get(plan=drawn_plan(world.users["futian_regulator"], "440304", beacon=beacon))
        # with the conflicted one barred only the two others remain: but they are then the previous pair
        # from the second plan on, so only the first plan is assigned
        assert conflicted.pk not in task.inspector_ids
        if beacon == "b1":
            assert task.inspector_ids == {u.pk for u in others}
        else:
            assert task.status == "unassigned" and task.unassigned_reason == pairing.ONLY_PREVIOUS_PAIR


def test_the_previous_pair_is_never_drawn_again(world: World) -> None:
    make_inspectors("440304", 3, prefix="p")
    last: set[int] = set()
    for beacon in ("b1", "b2", "b3", "b4", "b5", "b6"):
        task = InspectionTask.objects.get(plan=drawn_plan(world.users["futian_regulator"], "440304", beacon=beacon))
        assert len(task.inspector_ids) == 2 and task.inspector_ids != last
        prev = task.plan.pairing["previous"]
        assert (prev == {}) == (not last)
        last = task.inspector_ids


def test_conflict_declaration_permissions(world: World) -> None:
    org = world.orgs["stall_f"].pk
    insp = world.users["futian_inspector"]
    reg = conflict_declare(actor=world.users["futian_regulator"], organization_id=org, reason="亲属",
                           inspector_id=insp.pk)
    assert reg.inspector == insp and reg.declared_by == "futian_regulator"
    with pytest.raises(PermissionDenied):
        conflict_declare(actor=world.users["stall_f_user"], organization_id=org, reason="x", inspector_id=insp.pk)
    with pytest.raises(PermissionDenied):  # an inspector declares only for itself
        conflict_declare(actor=insp, organization_id=org, reason="x", inspector_id=world.users["admin"].pk)
    other = make_inspectors("440305", 1, prefix="n")[0]
    with pytest.raises(NotFound):  # a Futian regulator cannot declare for a Nanshan inspector
        conflict_declare(actor=world.users["futian_regulator"], organization_id=org, reason="x", inspector_id=other.pk)
    with pytest.raises(JiliangError):
        conflict_declare(actor=other, organization_id=org, reason="  ")
    assert set(selectors.conflict_list(principal=insp)) == {reg}
    assert set(selectors.conflict_list(principal=world.users["futian_regulator"])) == {reg}
    assert list(selectors.conflict_list(principal=other)) == []
    assert list(selectors.conflict_list(principal=world.users["stall_f_user"])) == []


# ------------------------------------------------------------------------------------------ findings

def test_passing_spot_check_updates_validity_and_starts_the_task(world: World) -> None:
    task = futian_task(world)
    inst = world.instruments["I_F"]
    assert [r.instrument for r in selectors.task_rows(task)] == [inst]
    f = finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=inst.pk, present=True,
                       seal_intact=True, points=SCALE_OK)
    assert f.conforming and f.problems == [] and f.verification is not None
    v = Verification.objects.get(pk=f.verification.pk)
    assert v.kind == "spot_check" and v.conforming and v.institution == world.orgs["inst"]
    inst.refresh_from_db()
    assert inst.last_verified_on == TODAY and inst.last_verification_conforming and inst.valid_until is not None
    task.refresh_from_db()
    assert task.status == "in_progress" and task.started_at is not None
    assert not Case.objects.exists() and not CreditEvent.objects.exists()
    with pytest.raises(JiliangError):  # one finding per instrument and task
        finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=inst.pk, present=True)
    # the verification (an import entry of one row) is logged under the inspector's name
    assert ChangeLog.objects.filter(model="verification").latest("id").actor_label == inspector_of(task).username


def test_failing_spot_check_opens_a_case_with_the_configured_legal_basis(world: World) -> None:
    task = futian_task(world)
    inst = world.instruments["I_F"]
    f = finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=inst.pk, present=True,
                       seal_intact=True, points=SCALE_BAD, note="最大秤量点超差")
    assert not f.conforming and f.problems == ["spot_check_nonconforming"]
    inst.refresh_from_db()
    assert inst.last_verification_conforming is False and inst.valid_until is None
    case = Case.objects.get()
    rule = case_rules()["violations"]["spot_check_nonconforming"]
    assert case.finding == f and case.entity == world.orgs["stall_f"] and case.status == "open"
    assert "《中华人民共和国计量法》第九条" in case.legal_basis and case.order == rule["order"].strip()
    assert case.deadline == TODAY + dt.timedelta(days=rule["deadline_days"])
    ev = CreditEvent.objects.get()
    assert (ev.entity, ev.kind, ev.source) == (world.orgs["stall_f"], "spot_check_failed", f"task:{task.pk}")


def test_broken_seal_and_checksum_mismatch_open_a_case_without_test_points(world: World) -> None:
    inst = world.instruments["I_F"]
    Instrument.objects.filter(pk=inst.pk).update(sw_hash="AB12CD34")
    task = futian_task(world)
    f = finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=inst.pk, present=True,
                       seal_intact=False, sw_hash_shown="ffff0000")
    assert f.sw_hash_filed == "AB12CD34" and f.sw_match is False and f.verification is None
    assert f.problems == ["seal_broken", "software_mismatch"]
    case = Case.objects.get()
    assert [v["key"] for v in case.violations] == ["seal_broken", "software_mismatch"]
    assert case.deadline == TODAY + dt.timedelta(days=10)  # the shorter deadline of the two


def test_matching_checksum_case_insensitive_and_absent_instrument(world: World) -> None:
    inst = world.instruments["I_F"]
    Instrument.objects.filter(pk=inst.pk).update(sw_hash="AB12CD34")
    task = futian_task(world)
    with pytest.raises(JiliangError):  # an absent instrument cannot be checked
        finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=inst.pk, present=False,
                       seal_intact=True)
    f = finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=inst.pk, present=True,
                       seal_intact=True, sw_hash_shown=" ab12cd34 ")
    assert f.sw_match is True and f.conforming and not Case.objects.exists()


def test_only_the_two_assigned_inspectors_record_findings(world: World) -> None:
    task = futian_task(world)
    inst = world.instruments["I_F"].pk
    outsider = ({world.users["futian_inspector"]} | set(make_inspectors("440304", 1, prefix="o"))) - {
        task.inspector_1, task.inspector_2}
    with pytest.raises(PermissionDenied):  # regulators of the region view, they do not record
        finding_record(actor=world.users["futian_regulator"], task_id=task.pk, instrument_id=inst, present=True)
    for user in [*outsider, world.users["stall_f_user"], world.users["citizen"], world.users["futian_institute"]]:
        with pytest.raises(NotFound):
            finding_record(actor=user, task_id=task.pk, instrument_id=inst, present=True)
    with pytest.raises(JiliangError):  # an instrument not on the list
        finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=world.instruments["I_N"].pk,
                       present=True)
    assert task.inspector_2 is not None
    finding_record(actor=task.inspector_2, task_id=task.pk, instrument_id=inst, present=True, seal_intact=True)
    assert Finding.objects.count() == 1


def test_completion_needs_every_instrument_and_a_clean_task_is_a_passed_spot_check(world: World) -> None:
    task = futian_task(world)
    with pytest.raises(JiliangError) as exc:
        task_complete(actor=inspector_of(task), task_id=task.pk)
    assert exc.value.details[0].value == "SC-F-1"
    finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=world.instruments["I_F"].pk,
                   present=True, seal_intact=True, points=SCALE_OK)
    done = task_complete(actor=inspector_of(task), task_id=task.pk, summary="未发现问题")
    assert done.status == "completed" and done.conclusion == "conforming" and done.completed_at is not None
    assert CreditEvent.objects.get().kind == "spot_check_passed"
    with pytest.raises(JiliangError):
        task_complete(actor=inspector_of(task), task_id=task.pk)
    with pytest.raises(JiliangError):  # a completed task takes no more findings
        finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=world.instruments["I_F"].pk,
                       present=True)


# ------------------------------------------------------------------------------------------ cases

def failing_case(world: World) -> Case:
    task = futian_task(world)
    finding_record(actor=inspector_of(task), task_id=task.pk, instrument_id=world.instruments["I_F"].pk,
                   present=True, seal_intact=True, points=SCALE_BAD)
    return Case.objects.get()


def test_the_entity_reports_and_the_regulator_confirms_the_rectification(world: World) -> None:
    case = failing_case(world)
    with pytest.raises(JiliangError):
        case_rectify(actor=world.users["stall_f_user"], case_id=case.pk, note="  ")
    reported = case_rectify(actor=world.users["stall_f_user"], case_id=case.pk, note="已停用并送检，检定合格")
    assert reported.status == "rectified" and reported.rectified_on == TODAY
    assert not CreditEvent.objects.filter(kind="rectification_done").exists()
    with pytest.raises(JiliangError):  # reported once, awaiting confirmation
        case_rectify(actor=world.users["stall_f_user"], case_id=case.pk, note="again")
    with pytest.raises(NotFound):
        case_rectify(actor=world.users["citizen"], case_id=case.pk, note="x")
    with pytest.raises(NotFound):
        case_rectify(actor=make_inspectors("440304", 1, prefix="z")[0], case_id=case.pk, note="x")
    closed = case_rectify(actor=world.users["futian_regulator"], case_id=case.pk, note="复查确认整改完成")
    assert closed.status == "closed" and closed.closed_at is not None
    ev = CreditEvent.objects.get(kind="rectification_done")
    assert ev.source == f"case:{case.pk}" and ev.entity == world.orgs["stall_f"]
    with pytest.raises(JiliangError):
        case_rectify(actor=world.users["futian_regulator"], case_id=case.pk, note="again")
    states = [(x.before or {}).get("status") for x in ChangeLog.objects.filter(model="case").order_by("id")]
    assert states == [None, "open", "rectified"]


def test_overdue_rectifications_escalate_and_near_deadlines_are_due(world: World) -> None:
    case = failing_case(world)
    report = case_escalate_overdue(actor=None, today=case.deadline - dt.timedelta(days=10))
    assert (report.reminded, report.escalated) == (0, 0)
    report = case_escalate_overdue(actor=None, today=case.deadline - dt.timedelta(days=2))
    assert (report.reminded, report.escalated) == (1, 0)
    assert Case.objects.get().status == "rectification_due"
    report = case_escalate_overdue(actor=None, today=case.deadline + dt.timedelta(days=1))
    assert (report.reminded, report.escalated) == (0, 1)
    case.refresh_from_db()
    assert case.status == "escalated" and case.escalated_at is not None
    assert case_escalate_overdue(actor=None, today=case.deadline + dt.timedelta(days=2)).escalated == 0
    log = ChangeLog.objects.filter(model="case", object_id=str(case.pk), action="update").order_by("id")
    assert [(x.before["status"], x.after["status"]) for x in log] == [("open", "rectification_due"),
                                                                      ("rectification_due", "escalated")]
    # a late rectification still closes it
    assert case_rectify(actor=inspector_of(case.task), case_id=case.pk, note="逾期后完成整改").status == "closed"


def test_escalation_is_a_cli_command(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    case = failing_case(world)
    Case.objects.filter(pk=case.pk).update(deadline=TODAY - dt.timedelta(days=1))
    from jiliang.cli import main

    assert main(["cases", "escalate"]) == 0
    assert "1 escalated" in capsys.readouterr().out
    assert Case.objects.get().status == "escalated"
    assert ChangeLog.objects.filter(model="case", action="update", actor_label="system:cli").exists()


# ------------------------------------------------------------------------------------------ scope

def test_who_sees_tasks_and_cases(world: World) -> None:
    case = failing_case(world)
    task = case.task
    u = world.users
    assigned = task.inspector_1
    seen = {name: set(selectors.task_list(principal=user)) for name, user in u.items()}
    assert seen["admin"] == seen["futian_regulator"] == seen["city_regulator"] == {task}
    assert seen["stall_f_user"] == set()  # not before the task is completed
    assert seen["futian_institute"] == seen["citizen"] == seen["water_user"] == seen["maker_user"] == set()
    assert set(selectors.task_list(principal=assigned)) == {task}
    assert (seen["futian_inspector"] == {task}) == (u["futian_inspector"].pk in task.inspector_ids)
    cases = {name: set(selectors.case_list(principal=user)) for name, user in u.items()}
    assert cases["futian_regulator"] == cases["stall_f_user"] == cases["admin"] == {case}
    assert cases["citizen"] == cases["water_user"] == cases["futian_institute"] == set()
    assert set(selectors.case_list(principal=assigned)) == {case}
    # once completed, the entity sees its own task and its result
    task_complete(actor=assigned, task_id=task.pk)
    assert set(selectors.task_list(principal=u["stall_f_user"])) == {task}
    assert selectors.task_get(principal=u["stall_f_user"], pk=task.pk).conclusion == "nonconforming"
    with pytest.raises(NotFound):
        selectors.task_get(principal=u["water_user"], pk=task.pk)


def test_spot_check_institution_prefers_the_most_local_one(world: World) -> None:
    from tests.supervision.inspection_setup import make_institute
    from tests.world import make_uscc

    city = make_institute("440300", make_uscc("440300", 77, "12"), "深圳市计量质量检测研究院")
    assert spot_check_institution("440304") == world.orgs["inst"]      # the Futian institute
    assert spot_check_institution("440305") == city                    # Nanshan: only the city's covers it
    assert spot_check_institution("110101") is None


# ------------------------------------------------------------------------------------------ publication

def test_results_are_published_once_every_task_is_completed(world: World) -> None:
    reg = world.users["futian_regulator"]
    case = failing_case(world)
    plan = case.task.plan
    with pytest.raises(JiliangError):  # the draw is not public yet
        results_publish(actor=reg, plan_id=plan.pk)
    plan_publish(actor=reg, plan_id=plan.pk)
    with pytest.raises(JiliangError) as exc:  # the task is still in progress
        results_publish(actor=reg, plan_id=plan.pk)
    assert exc.value.details[0].value == world.orgs["stall_f"].uscc
    assert selectors.plan_results(plan) is None
    task_complete(actor=inspector_of(case.task), task_id=case.task.pk)
    with pytest.raises(PermissionDenied):
        results_publish(actor=world.users["futian_inspector"], plan_id=plan.pk)
    plan = results_publish(actor=reg, plan_id=plan.pk)
    rows = selectors.plan_results(plan)
    assert rows is not None and len(rows) == 1
    assert rows[0].as_dict() == {"uscc": world.orgs["stall_f"].uscc, "name": world.orgs["stall_f"].name,
                                 "inspected_on": TODAY.isoformat(), "conclusion": "nonconforming",
                                 "case_outcome": "rectifying"}
    case_rectify(actor=reg, case_id=case.pk, note="整改完成")
    assert selectors.plan_results(plan)[0].case_outcome == "rectified"  # type: ignore[index]
    with pytest.raises(JiliangError):
        results_publish(actor=reg, plan_id=plan.pk)
