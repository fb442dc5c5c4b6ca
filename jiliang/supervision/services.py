"""Writes for credit and inspection plans (信用评价、双随机抽查计划)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from jiliang.accounts.roles import Role, Scope
from jiliang.core.changelog import log_change, snapshot
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.engine import credit, draw
from jiliang.registry.models import Instrument, Organization, Region
from jiliang.supervision.models import CreditEvent, CreditGrade, InspectionPlan

GRADED_KINDS = ("market_entity", "market_operator", "charging_operator", "fuel_retailer", "utility")
DEFAULT_GRADE = "B"  # an entity never graded counts as "general risk" (信用风险一般) in a frame


def credit_event_record(*, actor: Any, entity_id: int, kind: str, occurred_on: dt.date, source: str,
                        note: str = "") -> CreditEvent:
    """Add an event to an entity's credit file; the same (entity, kind, source) is recorded once."""
    if kind not in credit.DEFAULT_EVENTS:
        raise JiliangError(f"unknown credit event {kind!r}", code="validation_failed")
    if occurred_on > timezone.localdate():
        raise JiliangError("a credit event cannot lie in the future", code="validation_failed")
    existing = CreditEvent.objects.filter(entity_id=entity_id, kind=kind, source=source).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            ev = CreditEvent.objects.create(entity_id=entity_id, kind=kind, occurred_on=occurred_on,
                                            source=source[:100], note=note[:300])
            log_change(actor=actor, obj=ev, action="create")
    except IntegrityError:
        return CreditEvent.objects.get(entity_id=entity_id, kind=kind, source=source)
    return ev


@dataclass
class RegradeReport:
    entities: int
    changed: int
    by_grade: dict[str, int]


@transaction.atomic
def credit_regrade(*, actor: Any, today: dt.date | None = None, config: credit.CreditConfig | None = None
                   ) -> RegradeReport:
    """Score every market-facing entity from its events (vectorised) and store the grades; every change of
    grade is logged with the score and the number of events it came from."""
    cfg = config or credit.CreditConfig.default()
    today = today or timezone.localdate()
    ids = list(Organization.objects.filter(Q(kinds__kind__in=GRADED_KINDS) | Q(credit_events__isnull=False))
               .distinct().order_by("id").values_list("id", flat=True))
    index = {pk: i for i, pk in enumerate(ids)}
    rows = list(CreditEvent.objects.filter(entity_id__in=ids).values_list("entity_id", "kind", "occurred_on"))
    ent = np.array([index[r[0]] for r in rows], dtype=np.intp)
    age = np.array([(today - r[2]).days for r in rows], dtype=np.float64)
    scores = credit.scores(cfg, n_entities=len(ids), entity=ent, event=[r[1] for r in rows], age_days=age)
    grades = credit.grades(cfg, scores)
    counts = np.bincount(ent, minlength=len(ids)) if len(ids) else np.array([], dtype=np.int64)
    now = timezone.now()
    current = {g.entity_id: g for g in CreditGrade.objects.filter(entity_id__in=ids)}
    changed = 0
    to_create = []
    for pk, s, g, n in zip(ids, scores.tolist(), grades, counts.tolist(), strict=True):
        old = current.get(pk)
        if old is None:
            to_create.append(CreditGrade(entity_id=pk, score=s, grade=g, events=n, computed_at=now))
            continue
        if old.grade != g or abs(old.score - s) > 1e-9 or old.events != n:
            before = snapshot(old)
            old.score, old.grade, old.events, old.computed_at = s, g, n, now
            old.save(update_fields=["score", "grade", "events", "computed_at"])
            if before["grade"] != g:
                log_change(actor=actor, obj=old, action="update", before=before)
                changed += 1
    CreditGrade.objects.bulk_create(to_create, batch_size=2000)
    by_grade = {k: grades.count(k) for k in credit.GRADES}
    return RegradeReport(entities=len(ids), changed=changed + len(to_create), by_grade=by_grade)


def _plan(actor: Any, plan_id: int) -> InspectionPlan:
    if not InspectionPlan.objects.restrict(actor, "view").filter(pk=plan_id).exists():
        raise NotFound(f"plan {plan_id} not found")
    plan = InspectionPlan.objects.restrict(actor, "change").select_for_update().filter(pk=plan_id).first()
    if plan is None:
        raise PermissionDenied("you may not change this plan")
    return plan


@transaction.atomic
def plan_create(*, actor: Any, name: str, region_code: str, period_start: dt.date, period_end: dt.date,
                instrument_types: list[str], shares: dict[str, float] | None = None) -> InspectionPlan:
    scope = Scope.of(actor)
    if not scope.is_admin and not (scope.role == Role.REGULATOR and scope.region_prefix
                                   and region_code.startswith(scope.region_prefix)):
        raise PermissionDenied("only a regulator creates plans, in its own region")
    if not Region.objects.filter(code=region_code).exists():
        raise JiliangError(f"unknown region {region_code}", code="validation_failed")
    if period_end < period_start:
        raise JiliangError("the period ends before it starts", code="validation_failed")
    try:
        sh = draw._shares(shares or draw.DEFAULT_SHARES)
    except draw.DrawError as exc:
        raise JiliangError(str(exc), code="validation_failed") from exc
    plan = InspectionPlan.objects.create(name=name[:200], region_id=region_code, period_start=period_start,
                                         period_end=period_end, instrument_types=sorted(set(instrument_types)),
                                         shares=sh, created_by=str(getattr(actor, "username", actor))[:150])
    log_change(actor=actor, obj=plan, action="create")
    return plan


def build_frame(plan: InspectionPlan) -> list[dict[str, Any]]:
    """The entities in the plan's region owning in-service instruments of its types, with their grade."""
    from jiliang.accounts.roles import region_prefix

    qs = Instrument.objects.filter(region__code__startswith=region_prefix(plan.region_id),
                                   status__in=["installed", "in_service"])
    if plan.instrument_types:
        qs = qs.filter(instrument_type_id__in=plan.instrument_types)
    owners = set(qs.values_list("owner_id", flat=True).distinct())
    grades = dict(CreditGrade.objects.filter(entity_id__in=owners).values_list("entity_id", "grade"))
    usccs = dict(Organization.objects.filter(pk__in=owners).values_list("id", "uscc"))
    return [{"id": usccs[o], "grade": grades.get(o, DEFAULT_GRADE), "weight": 1.0} for o in sorted(owners)]


@transaction.atomic
def plan_commit(*, actor: Any, plan_id: int) -> InspectionPlan:
    """Freeze the frame and publish the commitment (frame hash, seed commitment) before any draw."""
    plan = _plan(actor, plan_id)
    if plan.status != InspectionPlan.Status.DRAFT:
        raise JiliangError(f"a {plan.status} plan cannot be committed again", code="invalid_state")
    frame = build_frame(plan)
    if not frame:
        raise JiliangError("no entity in the plan's population", code="validation_failed")
    secret = secrets.token_bytes(32)
    c = draw.commit(frame=frame, shares=plan.shares, secret=secret)
    before = snapshot(plan)
    plan.frame, plan.frame_hash, plan.seed_commitment, plan.commitment_digest = frame, c.frame_hash, \
        c.seed_commitment, c.digest
    plan.secret_hex, plan.status, plan.committed_at = secret.hex(), InspectionPlan.Status.COMMITTED, timezone.now()
    plan.save()
    log_change(actor=actor, obj=plan, action="update", before=before)
    return plan


@transaction.atomic
def plan_draw(*, actor: Any, plan_id: int, beacon: str) -> InspectionPlan:
    """Draw with the beacon value fixed after the commitment (e.g. an external randomness beacon)."""
    plan = _plan(actor, plan_id)
    if plan.status != InspectionPlan.Status.COMMITTED:
        raise JiliangError(f"only a committed plan can be drawn (this one is {plan.status})", code="invalid_state")
    if not beacon.strip():
        raise JiliangError("the beacon value is required", code="validation_failed")
    result = draw.draw(frame=plan.frame, shares=plan.shares, secret=bytes.fromhex(plan.secret_hex),
                       beacon=beacon.strip())
    before = snapshot(plan)
    plan.beacon, plan.seed_hex, plan.selected = result.beacon, result.seed_hex, result.selected
    plan.status, plan.drawn_at = InspectionPlan.Status.DRAWN, timezone.now()
    plan.save()
    log_change(actor=actor, obj=plan, action="update", before=before)
    return plan


@transaction.atomic
def plan_publish(*, actor: Any, plan_id: int) -> InspectionPlan:
    """Make the secret, frame and targets public so anyone can re-check the draw (docs/draw.md)."""
    plan = _plan(actor, plan_id)
    if plan.status != InspectionPlan.Status.DRAWN:
        raise JiliangError(f"only a drawn plan can be published (this one is {plan.status})", code="invalid_state")
    before = snapshot(plan)
    plan.status, plan.published_at = InspectionPlan.Status.PUBLISHED, timezone.now()
    plan.save(update_fields=["status", "published_at"])
    log_change(actor=actor, obj=plan, action="update", before=before)
    return plan


def plan_bundle(plan: InspectionPlan) -> dict[str, Any]:
    """The published bundle (jiliang draw verify reads it); only for published plans."""
    if plan.status != InspectionPlan.Status.PUBLISHED:
        raise JiliangError("the plan is not published yet", code="invalid_state", status=409)
    return {"plan": f"{plan.pk}:{plan.name}",
            "commitment": {"algorithm": draw.ALGORITHM, "frame_hash": plan.frame_hash,
                           "frame_size": len(plan.frame), "seed_commitment": plan.seed_commitment,
                           "shares": plan.shares},
            "commitment_digest": plan.commitment_digest, "secret_hex": plan.secret_hex, "beacon": plan.beacon,
            "frame": plan.frame, "selected": plan.selected}
