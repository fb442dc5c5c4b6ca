"""Credit and plan API (``/api/v1/credit/…``, ``/api/v1/plans/…``, public ``/api/v1/public/plans/{id}/bundle``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Schema, Status

from jiliang.core.api import ERRORS, Page, paginate, principal
from jiliang.core.errors import NotFound
from jiliang.engine.credit import CreditConfig, explain
from jiliang.supervision import services
from jiliang.supervision.models import CreditEvent, CreditGrade, InspectionPlan

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
            "explanation": explain(CreditConfig.default(), [(e.kind, float((today - e.occurred_on).days))
                                                             for e in events])}


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
