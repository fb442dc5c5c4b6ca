"""Credit and plan API (``/api/v1/credit/…``, ``/api/v1/plans/…``, public ``/api/v1/public/plans/{id}/bundle``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Schema, Status

from jiliang.core.api import ERRORS, Page, paginate, principal
from jiliang.core.errors import NotFound
from jiliang.engine.credit import explain
from jiliang.supervision import selectors, services
from jiliang.supervision.models import Case, CreditEvent, CreditGrade, InspectionPlan

router = Router(tags=["supervision"])
public_router = Router(tags=["public"])


class GradeOut(Schema):
    entity_id: int
    uscc: str
    name: str
    score: float
    grade: str
    events: int
    computed_at: dt.datetime

    @staticmethod
    def resolve_uscc(obj: Any) -> str:
        return str(obj.entity.uscc)

    @staticmethod
    def resolve_name(obj: Any) -> str:
        return str(obj.entity.name)


class CreditFileOut(Schema):
    grade: GradeOut | None
    events: list[dict[str, Any]]
    explanation: list[dict[str, Any]]


class PlanIn(Schema):
    name: str
    region_code: str
    period_start: dt.date
    period_end: dt.date
    instrument_types: list[str] = []
    shares: dict[str, float] | None = None


class PlanOut(Schema):
    id: int
    name: str
    region_code: str
    period_start: dt.date
    period_end: dt.date
    instrument_types: list[str]
    shares: dict[str, float]
    status: str
    frame_size: int
    frame_hash: str
    seed_commitment: str
    commitment_digest: str
    beacon: str
    selected: list[str]

    @staticmethod
    def resolve_region_code(obj: Any) -> str:
        return str(obj.region_id)

    @staticmethod
    def resolve_frame_size(obj: Any) -> int:
        return len(obj.frame)


class DrawIn(Schema):
    beacon: str


@router.get("/credit/grades", response={200: Page[GradeOut], **ERRORS})
def list_grades(request: HttpRequest, grade: str = "", limit: int | None = None, offset: int | None = None) -> Any:
    qs = CreditGrade.objects.restrict(principal(request), "view").select_related("entity").order_by("score", "id")
    if grade:
        qs = qs.filter(grade=grade)
    return paginate(qs, limit, offset)


@router.get("/credit/entities/{org_id}", response={200: CreditFileOut, **ERRORS},
            summary="An entity's credit file: grade, events and each event's contribution")
def credit_file(request: HttpRequest, org_id: int) -> Any:
    p = principal(request)
    grade = CreditGrade.objects.restrict(p, "view").select_related("entity").filter(entity_id=org_id).first()
    events = list(CreditEvent.objects.restrict(p, "view").filter(entity_id=org_id).order_by("-occurred_on"))
    if grade is None and not events:
        raise NotFound(f"no credit file for organization {org_id} in your scope")
    today = timezone.localdate()
    rows = [{"kind": e.kind, "occurred_on": e.occurred_on.isoformat(), "source": e.source, "note": e.note}
            for e in events]
    return {"grade": grade, "events": rows,
            "explanation": [{k: v for k, v in row.items() if k != "exact"} for row in explain(
                services.current_credit_config()[1], [(e.kind, float((today - e.occurred_on).days))
                                                      for e in events if e.occurred_on <= today])]}


class CreditConfigVersionOut(Schema):
    version: int
    note: str
    created_by: str
    created_at: dt.datetime


class CreditConfigOut(Schema):
    version: int
    config: dict[str, Any]
    note: str = ""
    created_by: str = ""
    created_at: dt.datetime | None = None
    may_change: bool
    history: list[CreditConfigVersionOut]


class CreditConfigIn(Schema):
    config: dict[str, Any]
    note: str = ""


def _config_out(request: HttpRequest) -> dict[str, Any]:
    p = principal(request)
    view = selectors.credit_config_get(principal=p)
    return {"version": view.version, "config": view.config.as_mapping(),
            "note": view.row.note if view.row else "", "created_by": view.row.created_by if view.row else "",
            "created_at": view.row.created_at if view.row else None,
            "may_change": selectors.may_change_credit_config(principal=p), "history": view.history}


@router.get("/credit/config", response={200: CreditConfigOut, **ERRORS},
            summary="The credit configuration in force (weights, half-lives, base, clamp, thresholds, draw shares)")
def get_credit_config(request: HttpRequest) -> Any:
    return _config_out(request)


@router.put("/credit/config", response={200: CreditConfigOut, **ERRORS},
            summary="Store a new version of the credit configuration (administrators and city regulators)")
def put_credit_config(request: HttpRequest, payload: CreditConfigIn) -> Any:
    services.credit_config_update(actor=principal(request), config=payload.config, note=payload.note)
    return _config_out(request)


@router.get("/plans", response={200: Page[PlanOut], **ERRORS})
def list_plans(request: HttpRequest, limit: int | None = None, offset: int | None = None) -> Any:
    return paginate(InspectionPlan.objects.restrict(principal(request), "view"), limit, offset)


@router.get("/plans/{plan_id}", response={200: PlanOut, **ERRORS})
def get_plan(request: HttpRequest, plan_id: int) -> Any:
    plan = InspectionPlan.objects.restrict(principal(request), "view").filter(pk=plan_id).first()
    if plan is None:
        raise NotFound(f"plan {plan_id} not found")
    return plan


@router.post("/plans", response={201: PlanOut, **ERRORS})
def create_plan(request: HttpRequest, payload: PlanIn) -> Any:
    return Status(201, services.plan_create(actor=principal(request), **payload.dict()))


@router.post("/plans/{plan_id}/commit", response={200: PlanOut, **ERRORS},
             summary="Freeze the frame and publish the commitment")
def commit_plan(request: HttpRequest, plan_id: int) -> Any:
    return services.plan_commit(actor=principal(request), plan_id=plan_id)


@router.post("/plans/{plan_id}/draw", response={200: PlanOut, **ERRORS},
             summary="Draw with a beacon value fixed after the commitment")
def draw_plan(request: HttpRequest, plan_id: int, payload: DrawIn) -> Any:
    return services.plan_draw(actor=principal(request), plan_id=plan_id, beacon=payload.beacon)


@router.post("/plans/{plan_id}/publish", response={200: PlanOut, **ERRORS})
def publish_plan(request: HttpRequest, plan_id: int) -> Any:
    return services.plan_publish(actor=principal(request), plan_id=plan_id)


@public_router.get("/public/plans/{plan_id}/bundle", auth=None, response={200: dict[str, Any], **ERRORS},
                   summary="A published plan's draw bundle, for jiliang draw verify or any checker (docs/draw.md)")
def plan_bundle(request: HttpRequest, plan_id: int) -> Any:
    plan = InspectionPlan.objects.filter(pk=plan_id, status=InspectionPlan.Status.PUBLISHED).first()
    if plan is None:
        raise NotFound(f"no published plan {plan_id}")
    return services.plan_bundle(plan)


# ------------------------------------------------------------------------------------------ inspections
# Tasks (检查任务), findings with spot-check verification (抽查检定), cases (案件), conflict declarations
# (利益冲突声明) and the publication of results (一公开).  Reads through the selectors (row-level scope), writes
# through the services.

class TaskOut(Schema):
    id: int
    plan_id: int | None
    plan_name: str
    alert_id: int | None
    entity_id: int
    entity_uscc: str
    entity_name: str
    status: str
    unassigned_reason: str
    inspectors: list[str]
    conclusion: str
    summary: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None

    @staticmethod
    def resolve_plan_name(obj: Any) -> str:
        return str(obj.plan.name) if obj.plan_id else f"预警核查 #{obj.alert_id}"

    @staticmethod
    def resolve_entity_uscc(obj: Any) -> str:
        return str(obj.entity.uscc)

    @staticmethod
    def resolve_entity_name(obj: Any) -> str:
        return str(obj.entity.name)

    @staticmethod
    def resolve_inspectors(obj: Any) -> list[str]:
        return [u.username for u in (obj.inspector_1, obj.inspector_2) if u is not None]


class FindingIn(Schema):
    instrument_id: int
    present: bool
    seal_intact: bool | None = None
    sw_hash_shown: str = ""
    points: list[dict[str, Any]] | None = None
    note: str = ""


class FindingOut(Schema):
    id: int
    task_id: int
    instrument_id: int
    device_id: str
    present: bool
    seal_intact: bool | None
    sw_hash_shown: str
    sw_hash_filed: str
    sw_match: bool | None
    verification_id: int | None
    conforming: bool
    problems: list[str]
    note: str
    case_id: int | None
    recorded_by: str
    recorded_at: dt.datetime

    @staticmethod
    def resolve_device_id(obj: Any) -> str:
        return str(obj.instrument.device_id)

    @staticmethod
    def resolve_case_id(obj: Any) -> int | None:
        case = Case.objects.filter(finding_id=obj.pk).values_list("pk", flat=True).first()
        return int(case) if case is not None else None


class TaskInstrumentOut(Schema):
    id: int
    device_id: str
    instrument_type: str
    sw_hash: str
    finding: FindingOut | None


class TaskDetailOut(TaskOut):
    instruments: list[TaskInstrumentOut]


class TaskCompleteIn(Schema):
    summary: str = ""


class CaseOut(Schema):
    id: int
    task_id: int
    entity_id: int
    entity_uscc: str
    entity_name: str
    device_id: str
    violations: list[dict[str, str]]
    legal_basis: str
    order: str
    deadline: dt.date
    status: str
    rectification_note: str
    rectified_on: dt.date | None
    opened_at: dt.datetime
    escalated_at: dt.datetime | None
    closed_at: dt.datetime | None

    @staticmethod
    def resolve_entity_uscc(obj: Any) -> str:
        return str(obj.entity.uscc)

    @staticmethod
    def resolve_entity_name(obj: Any) -> str:
        return str(obj.entity.name)

    @staticmethod
    def resolve_device_id(obj: Any) -> str:
        return str(obj.finding.instrument.device_id)


class RectifyIn(Schema):
    note: str
    rectified_on: dt.date | None = None


class ConflictIn(Schema):
    organization_id: int
    reason: str
    inspector_id: int | None = None


class ConflictOut(Schema):
    id: int
    inspector_id: int
    inspector: str
    organization_id: int
    organization_name: str
    reason: str
    declared_at: dt.datetime
    declared_by: str

    @staticmethod
    def resolve_inspector(obj: Any) -> str:
        return str(obj.inspector.username)

    @staticmethod
    def resolve_organization_name(obj: Any) -> str:
        return str(obj.organization.name)


class ResultOut(Schema):
    uscc: str
    name: str
    inspected_on: dt.date | None
    conclusion: str
    case_outcome: str


class PublicResultsOut(Schema):
    plan_id: int
    plan_name: str
    results_published_at: dt.datetime
    results: list[ResultOut]


@router.get("/tasks", response={200: Page[TaskOut], **ERRORS},
            summary="Inspection tasks in your scope (inspectors: their own; regulators: their region)")
def list_tasks(request: HttpRequest, status: str = "", plan_id: int | None = None, limit: int | None = None,
               offset: int | None = None) -> Any:
    return paginate(selectors.task_list(principal=principal(request), status=status, plan_id=plan_id), limit, offset)


@router.post("/alerts/{alert_id}/task", response={200: TaskOut, **ERRORS},
             summary="Open the inspection task of a confirmed alert (预警核查): the instrument's owner, two inspectors "
                     "drawn from the alert id (docs/draw.md §7); asking again returns the same task")
def open_alert_task(request: HttpRequest, alert_id: int) -> Any:
    return services.alert_task_open(actor=principal(request), alert_id=alert_id)


@router.get("/tasks/{task_id}", response={200: TaskDetailOut, **ERRORS},
            summary="A task with its instruments and the finding recorded for each")
def get_task(request: HttpRequest, task_id: int) -> Any:
    task = selectors.task_get(principal=principal(request), pk=task_id)
    rows = selectors.task_rows(task)
    instruments = [{"id": r.instrument.pk, "device_id": r.instrument.device_id,
                    "instrument_type": r.instrument.instrument_type_id, "sw_hash": r.instrument.sw_hash,
                    "finding": FindingOut.from_orm(r.finding).dict() if r.finding else None} for r in rows]
    setattr(task, "instruments", instruments)  # noqa: B010  (read by TaskDetailOut, not a model field)
    return task


@router.post("/tasks/{task_id}/findings", response={201: FindingOut, **ERRORS},
             summary="Record a finding (and the spot-check's test points) for one instrument of the task")
def create_finding(request: HttpRequest, task_id: int, payload: FindingIn) -> Any:
    return Status(201, services.finding_record(actor=principal(request), task_id=task_id, **payload.dict()))


@router.post("/tasks/{task_id}/complete", response={200: TaskOut, **ERRORS},
             summary="Complete a task once every instrument has a finding")
def complete_task(request: HttpRequest, task_id: int, payload: TaskCompleteIn) -> Any:
    return services.task_complete(actor=principal(request), task_id=task_id, summary=payload.summary)


@router.get("/cases", response={200: Page[CaseOut], **ERRORS}, summary="Cases (案件) in your scope")
def list_cases(request: HttpRequest, status: str = "", limit: int | None = None, offset: int | None = None) -> Any:
    return paginate(selectors.case_list(principal=principal(request), status=status), limit, offset)


@router.get("/cases/{case_id}", response={200: CaseOut, **ERRORS})
def get_case(request: HttpRequest, case_id: int) -> Any:
    return selectors.case_get(principal=principal(request), pk=case_id)


@router.post("/cases/{case_id}/rectify", response={200: CaseOut, **ERRORS},
             summary="Record the rectification: reported by the entity, or confirmed (closing the case)")
def rectify_case(request: HttpRequest, case_id: int, payload: RectifyIn) -> Any:
    return services.case_rectify(actor=principal(request), case_id=case_id, note=payload.note,
                                 rectified_on=payload.rectified_on)


@router.get("/conflicts", response={200: Page[ConflictOut], **ERRORS},
            summary="Declared conflicts of interest (利益冲突声明) in your scope")
def list_conflicts(request: HttpRequest, limit: int | None = None, offset: int | None = None) -> Any:
    return paginate(selectors.conflict_list(principal=principal(request)), limit, offset)


@router.post("/conflicts", response={201: ConflictOut, **ERRORS},
             summary="Declare a conflict of interest: the inspector is never drawn for that organisation")
def declare_conflict(request: HttpRequest, payload: ConflictIn) -> Any:
    return Status(201, services.conflict_declare(actor=principal(request), **payload.dict()))


@router.post("/plans/{plan_id}/results/publish", response={200: PlanOut, **ERRORS},
             summary="Publish the plan's results (一公开) once every task is completed")
def publish_results(request: HttpRequest, plan_id: int) -> Any:
    return services.results_publish(actor=principal(request), plan_id=plan_id)


@public_router.get("/public/plans/{plan_id}/results", auth=None, response={200: PublicResultsOut, **ERRORS},
                   summary="A plan's published results: per target the name, date, conclusion and case outcome")
def plan_results(request: HttpRequest, plan_id: int) -> Any:
    try:
        plan = selectors.public_plan_get(pk=plan_id)
    except NotFound:
        raise NotFound(f"no published results for plan {plan_id}") from None
    rows = selectors.plan_results(plan)
    if rows is None:
        raise NotFound(f"no published results for plan {plan_id}")
    return {"plan_id": plan.pk, "plan_name": plan.name, "results_published_at": plan.results_published_at,
            "results": [r.as_dict() for r in rows]}
