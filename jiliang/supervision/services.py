"""Writes for credit and inspection plans (信用评价、双随机抽查计划)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from jiliang.accounts.models import User
from jiliang.accounts.roles import ORG_ROLES, Role, Scope, region_prefix
from jiliang.core import bulk
from jiliang.core.changelog import IMPORT_COLUMNS, actor_fields, import_entries, log_change, snapshot
from jiliang.core.context import current_request_id
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied, Problem
from jiliang.core.models import ChangeLog
from jiliang.engine import credit, draw, pairing
from jiliang.registry.models import Instrument, Organization, Region
from jiliang.registry.policy import CHANGE
from jiliang.supervision import grading
from jiliang.supervision.models import (
    Case,
    ConflictDeclaration,
    CreditConfigVersion,
    CreditEvent,
    CreditGrade,
    CreditRegradeRun,
    Finding,
    InspectionPlan,
    InspectionTask,
)
from jiliang.supervision.policy import credit_config_q
from jiliang.verification.services import verification_record

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
    changed: int  # new grades + grades that changed letter
    by_grade: dict[str, int]
    created: int = 0
    updated: int = 0  # rows rewritten (score, event count, letter or configuration version changed)
    config_version: int = 0
    run_id: int | None = None


def current_credit_config() -> tuple[int, credit.CreditConfig]:
    """The configuration in force (信用评价配置): the highest stored version, or version 0, the built-in
    defaults of :mod:`jiliang.engine.credit`, while none is stored.  System use (regrade, plan defaults);
    people read it through :func:`jiliang.supervision.selectors.credit_config_get`."""
    row = CreditConfigVersion.objects.order_by("-version").first()
    if row is None:
        return 0, credit.CreditConfig.default()
    return row.version, credit.CreditConfig.from_mapping(row.config)


def may_change_credit_config(actor: Any) -> bool:
    """Administrators and city regulators (the central policy, :func:`policy.credit_config_q`)."""
    scope = Scope.of(actor)
    return scope.is_admin or credit_config_q(scope, CHANGE) is not None


@transaction.atomic
def credit_config_update(*, actor: Any, config: Mapping[str, Any], note: str = "") -> CreditConfigVersion:
    """Store a new version of the credit configuration (weights and half-lives per event kind, base score,
    clamp bounds, grade thresholds A/B/C, draw shares per grade A–D).  Every problem is reported at once with
    the field it concerns; every event kind must be configured.  The change is logged with the previous
    version as ``before`` (version 0: the built-in defaults).  An unchanged configuration stores nothing and
    returns the current version."""
    if not may_change_credit_config(actor):
        raise PermissionDenied("only an administrator or a city regulator changes the credit configuration")
    try:
        cfg = credit.CreditConfig.from_mapping(config, kinds=list(credit.DEFAULT_EVENTS))
    except credit.CreditConfigError as exc:
        raise JiliangError("the credit configuration is invalid", code="validation_failed",
                           details=[Problem(row=None, field=f, reason=r) for f, r in exc.problems]) from exc
    current = CreditConfigVersion.objects.select_for_update(of=("self",)).order_by("-version").first()
    if current is not None and credit.CreditConfig.from_mapping(current.config) == cfg:
        return current
    before = snapshot(current) if current is not None else {
        "version": 0, "config": credit.CreditConfig.default().as_mapping(), "note": "built-in defaults"}
    try:
        with transaction.atomic():
            row = CreditConfigVersion.objects.create(
                version=(current.version if current else 0) + 1, config=cfg.as_mapping(), note=note.strip()[:300],
                created_by=str(getattr(actor, "username", actor))[:150])
    except IntegrityError as exc:  # another version was stored meanwhile (only possible before the first)
        raise JiliangError("the configuration was changed meanwhile; reload and try again",
                           code="invalid_state", status=409) from exc
    log_change(actor=actor, obj=row, action="create", before=before)
    return row


def credit_entity_events(entity_id: int, today: dt.date) -> list[tuple[CreditEvent, float]]:
    """One entity's events that occurred on or before ``today``, newest first, each with its age in days."""
    events = CreditEvent.objects.filter(entity_id=entity_id, occurred_on__lte=today).order_by("-occurred_on", "-id")
    return [(e, float((today - e.occurred_on).days)) for e in events]


def credit_entity_score(entity_id: int, *, today: dt.date, config: credit.CreditConfig) -> tuple[float, str, int]:
    """One entity's score, grade and event count, computed from its own rows (the explanation page's sum; the
    columnar regrade must give the same)."""
    pairs = [(e.kind, age) for e, age in credit_entity_events(entity_id, today)]
    s = credit.score_one(config, pairs)
    return s, credit.grades(config, [s])[0], len(pairs)


_GRADE_LOG_FIELDS = ("id", "entity_id", "score", "grade", "events", "computed_at", "config_version")


@transaction.atomic
def credit_regrade(*, actor: Any, today: dt.date | None = None, config: credit.CreditConfig | None = None
                   ) -> RegradeReport:
    """Score every market-facing entity (计量信用评定) from its events and store the grades, column-wise:
    events and current grades are read into NumPy arrays (:mod:`jiliang.supervision.grading`), scored by the
    vectorised engine with the stored configuration (:func:`current_credit_config`; ``config`` overrides it,
    recorded as version 0), and only the rows that changed are written, in bulk.  New grades are logged as
    ``import`` entries (one per 10,000), every change of letter as an ``update`` entry with before/after, and
    the run itself (as-of date, configuration version and values, event count and high-water id, outcome) as
    a :class:`CreditRegradeRun`."""
    started = timezone.now()
    version, cfg = (0, config) if config is not None else current_credit_config()
    today = today or timezone.localdate()
    bulk.lock_for_bulk_insert(CreditGrade)
    ev = grading.load_events(today=today, kinds=cfg.event_names)
    scored = grading.score_all(cfg, ev, grading.graded_kind_entities(GRADED_KINDS))
    old = grading.load_grades()
    now = timezone.now()
    # Match stored grades to scored entities (both ascending by entity id).
    at = np.searchsorted(old.entity, scored.ids) if old.entity.size else np.zeros(scored.ids.size, np.intp)
    at = np.minimum(at, max(old.entity.size - 1, 0))
    known = (old.entity[at] == scored.ids) if old.entity.size else np.zeros(scored.ids.size, dtype=bool)
    new = ~known
    k_at = at[known]
    differs = ((old.grade[k_at] != scored.grade[known]) | (np.abs(old.score[k_at] - scored.score[known]) > 1e-9)
               | (old.events[k_at] != scored.events[known]) | (old.config_version[k_at] != version))
    upd = np.flatnonzero(known)[differs]
    letter = upd[old.grade[at[upd]] != scored.grade[upd]]
    new_ids = grading.insert_grades(scored.ids[new], scored.score[new], scored.grade[new], scored.events[new], now,
                                    version)
    grading.update_grades(scored.ids[upd], scored.score[upd], scored.grade[upd], scored.events[upd], now, version)
    _log_grades(actor, old, at, scored, new, new_ids, letter, now, version)
    by_grade = dict(zip(credit.GRADES, np.bincount(scored.grade, minlength=4).tolist(), strict=True))
    run = CreditRegradeRun.objects.create(
        as_of=today, config_version=version, config=cfg.as_mapping(), events=len(ev), last_event_id=ev.last_id,
        entities=int(scored.ids.size), created=int(new.sum()), changed=int(letter.size), by_grade=by_grade,
        started_at=started, finished_at=timezone.now(), actor=str(getattr(actor, "username", actor))[:150])
    log_change(actor=actor, obj=run, action="create")
    return RegradeReport(entities=int(scored.ids.size), changed=int(new.sum()) + int(letter.size), by_grade=by_grade,
                         created=int(new.sum()), updated=int(upd.size), config_version=version, run_id=run.pk)


def _log_grades(actor: Any, old: grading.GradeColumns, at: npt.NDArray[np.intp], scored: grading.Scored,
                new: npt.NDArray[np.bool_], new_ids: npt.NDArray[np.int64], letter: npt.NDArray[np.intp],
                now: dt.datetime, version: int) -> None:
    """Change log for a regrade: ``import`` entries for the new grades, one ``update`` entry with before and
    after per change of letter, written in bulk."""
    rows: list[list[Any]] = []
    if new_ids.size:
        at_s = now.isoformat()
        values = [[e, s, credit.GRADES[g], n, at_s, version] for e, s, g, n in zip(
            scored.ids[new].tolist(), scored.score[new].tolist(), scored.grade[new].tolist(),
            scored.events[new].tolist(), strict=True)]
        rows += import_entries(model=CreditGrade, ids=new_ids.tolist(), columns=list(_GRADE_LOG_FIELDS[1:]),
                               rows=values, actor=actor, at=now)
    if letter.size:
        actor_id, actor_label = actor_fields(actor)
        rid = current_request_id()
        at_s = now.isoformat()
        repr_model = CreditGrade._meta.model_name or ""
        for i in letter.tolist():
            j = int(at[i])
            ent = int(scored.ids[i])
            before = {"id": int(old.id[j]), "entity_id": ent, "score": float(old.score[j]),
                      "grade": credit.GRADES[int(old.grade[j])], "events": int(old.events[j]),
                      "config_version": int(old.config_version[j])}
            g = credit.GRADES[int(scored.grade[i])]
            s = float(scored.score[i])
            after = {"id": int(old.id[j]), "entity_id": ent, "score": s, "grade": g, "events": int(scored.events[i]),
                     "computed_at": at_s, "config_version": version}
            rows.append([now, ChangeLog.Action.UPDATE.value, "supervision", repr_model, str(int(old.id[j])),
                         f"{ent} {g} ({s:.1f})", actor_id, actor_label, rid, before, after, ""])
    if rows:
        bulk.insert_rows(ChangeLog, IMPORT_COLUMNS, rows)


def _plan(actor: Any, plan_id: int) -> InspectionPlan:
    if not InspectionPlan.objects.restrict(actor, "view").filter(pk=plan_id).exists():
        raise NotFound(f"plan {plan_id} not found")
    plan = InspectionPlan.objects.restrict(actor, "change").select_for_update(of=("self",)).filter(pk=plan_id).first()
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
        sh = draw._shares(shares or current_credit_config()[1].shares)
    except draw.DrawError as exc:
        raise JiliangError(str(exc), code="validation_failed") from exc
    plan = InspectionPlan.objects.create(name=name[:200], region_id=region_code, period_start=period_start,
                                         period_end=period_end, instrument_types=sorted(set(instrument_types)),
                                         shares=sh, created_by=str(getattr(actor, "username", actor))[:150])
    log_change(actor=actor, obj=plan, action="create")
    return plan


def build_frame(plan: InspectionPlan) -> list[dict[str, Any]]:
    """The entities in the plan's region owning in-service instruments of its types, with their grade."""
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
    """Draw with the beacon value fixed after the commitment (e.g. an external randomness beacon); each
    target gets an inspection task with two inspectors drawn from the same seed."""
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
    _assign_tasks(actor, plan)  # the second "random": two inspectors per target (jiliang-pairing-v1)
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
            "frame": plan.frame, "selected": plan.selected, "pairing": plan.pairing}


# ------------------------------------------------------------------------------------------ inspections
#
# Inspection tasks (检查任务) with two inspectors drawn by jiliang-pairing-v1, findings (现场检查记录) with the
# spot-check verification (抽查检定) judged by the MPE engine through verification_record, cases (案件) with
# the configured legal basis and a rectification deadline, conflict declarations (利益冲突声明) and the
# publication of results (一公开).

IN_USE = ("installed", "in_service")  # the statuses build_frame counts as "in service"


@functools.cache
def _case_rules_text(path: str) -> str:
    if path:
        return Path(path).read_text(encoding="utf-8")
    return resources.files("jiliang.supervision").joinpath("data/case_rules.yaml").read_text(encoding="utf-8")


def case_rules() -> dict[str, Any]:
    """The configured violations (legal basis, order, deadline) from ``data/case_rules.yaml`` or the file
    named by ``settings.JILIANG_CASE_RULES``."""
    data: dict[str, Any] = yaml.safe_load(_case_rules_text(str(getattr(settings, "JILIANG_CASE_RULES", "") or "")))
    return data


def _inspector_pool(plan: InspectionPlan) -> list[User]:
    """The plan region's active inspectors (执法人员), by id."""
    return list(User.objects.filter(role=Role.INSPECTOR, is_active=True,
                                    region__code__startswith=region_prefix(plan.region_id)).order_by("id"))


def _assign_tasks(actor: Any, plan: InspectionPlan) -> None:
    """One task per drawn entity with two inspectors drawn from the plan's seed (jiliang-pairing-v1); the
    inputs and the outcome are kept on the plan (``plan.pairing``) so the pairing can be re-checked."""
    orgs = {o.uscc: o for o in Organization.objects.filter(uscc__in=plan.selected)}
    targets = [u for u in sorted(plan.selected) if u in orgs]
    pool = _inspector_pool(plan)
    ids = [str(u.pk) for u in pool]
    by_org = {o.pk: u for u, o in orgs.items()}
    conflicts: dict[str, list[str]] = {}
    for org_id, insp_id in ConflictDeclaration.objects.filter(
            organization_id__in=by_org, inspector_id__in=[u.pk for u in pool]).values_list(
            "organization_id", "inspector_id"):
        conflicts.setdefault(by_org[org_id], []).append(str(insp_id))
    previous: dict[str, list[str]] = {}
    for t in (InspectionTask.objects.filter(entity_id__in=by_org, inspector_1__isnull=False,
                                            inspector_2__isnull=False)
              .order_by("entity_id", "-created_at", "-id")):
        previous.setdefault(by_org[t.entity_id], [str(t.inspector_1_id), str(t.inspector_2_id)])
    bundle = pairing.pairing_bundle(seed_hex=plan.seed_hex, targets=targets, inspectors=ids, conflicts=conflicts,
                                    previous=previous)
    plan.pairing = bundle
    for a in bundle["assignments"]:
        pair = a["inspectors"]
        task = InspectionTask.objects.create(
            plan=plan, entity=orgs[a["target"]],
            inspector_1_id=int(pair[0]) if pair else None, inspector_2_id=int(pair[1]) if pair else None,
            status=InspectionTask.Status.ASSIGNED if pair else InspectionTask.Status.UNASSIGNED,
            unassigned_reason=a["reason"])
        log_change(actor=actor, obj=task, action="create")


def task_instruments(task: InspectionTask) -> QuerySet[Instrument]:
    """The instruments a task inspects: the entity's in-service instruments of the plan's types in the plan's
    region (the same population the frame was built from); for an alert task the alert's instrument and, for
    a tank leak, the tank's nozzles the evidence names."""
    if task.plan is None:  # an alert task (预警核查): the alert's instrument, and a leaking tank's nozzles
        alert = task.alert
        if alert is None:
            return Instrument.objects.none()
        nozzles = [str(d) for d in (alert.evidence or {}).get("nozzles", []) if isinstance(d, str)]
        return Instrument.objects.filter(Q(pk=alert.device_id) | Q(device_id__in=nozzles),
                                         owner_id=task.entity_id).order_by("device_id")
    qs = Instrument.objects.filter(owner_id=task.entity_id, status__in=IN_USE,
                                   region__code__startswith=region_prefix(task.plan.region_id))
    if task.plan.instrument_types:
        qs = qs.filter(instrument_type_id__in=task.plan.instrument_types)
    return qs.order_by("device_id")


def _task(actor: Any, task_id: int) -> InspectionTask:
    """The task for a write by one of its two inspectors (404 outside the view scope, 403 for viewers)."""
    if not InspectionTask.objects.restrict(actor, "view").filter(pk=task_id).exists():
        raise NotFound(f"task {task_id} not found")
    task = (InspectionTask.objects.restrict(actor, "change").select_for_update(of=("self",)).select_related("plan")
            .filter(pk=task_id).first())
    if task is None:
        raise PermissionDenied("only the two inspectors assigned to this task record it")
    return task


class _AssignedInspector:
    """Who records a task's spot-check verification: the assigned inspector (logged under its own name)
    with the authority of the assignment, i.e. a regulator's scope narrowed to the instrument's district."""

    is_authenticated = True
    is_superuser = False

    def __init__(self, actor: Any, region_code: str) -> None:
        self.pk: Any = getattr(actor, "pk", None)
        self.username = str(getattr(actor, "username", actor))
        self.scope = Scope(role=Role.REGULATOR, org_id=None, region_prefix=region_code)


def spot_check_institution(region_code: str) -> Organization | None:
    """The verification institute (检定机构) that performs a spot-check in a district: the most local one
    whose region covers it (district before city before province), lowest id on a tie."""
    best: tuple[int, int, Organization] | None = None
    for org in Organization.objects.filter(kinds__kind="verification_institute").distinct():
        p = region_prefix(org.region_id)
        if region_code.startswith(p) and (best is None or (-len(p), org.pk) < best[:2]):
            best = (-len(p), org.pk, org)
    return best[2] if best else None


def _date(on: dt.date | None) -> dt.date:
    today = timezone.localdate()
    on = on or today
    if on > today:
        raise JiliangError("the date lies in the future", code="validation_failed")
    return on


@transaction.atomic
def finding_record(*, actor: Any, task_id: int, instrument_id: int, present: bool, seal_intact: bool | None = None,
                   sw_hash_shown: str = "", points: list[dict[str, Any]] | None = None, note: str = "",
                   on: dt.date | None = None) -> Finding:
    """Record what was found at one instrument of a task.  Test points go through
    :func:`jiliang.verification.services.verification_record` (kind ``spot_check``), so the MPE engine judges
    them and the instrument's validity follows.  A nonconforming test, a broken seal or a software checksum
    differing from the filed one opens a case (案件) and records ``spot_check_failed`` in the entity's
    credit file (once per task)."""
    task = _task(actor, task_id)
    on = _date(on)
    if task.status not in (InspectionTask.Status.ASSIGNED, InspectionTask.Status.IN_PROGRESS):
        raise JiliangError(f"a {task.status} task takes no more findings", code="invalid_state")
    inst = task_instruments(task).filter(pk=instrument_id).first()
    if inst is None:
        raise JiliangError("this instrument is not on the task's list", code="validation_failed",
                           details=[Problem(row=None, field="instrument_id", reason="not on the task's list")])
    if Finding.objects.filter(task=task, instrument=inst).exists():
        raise JiliangError(f"a finding for {inst.device_id} is already recorded", code="invalid_state")
    shown = sw_hash_shown.strip()
    if not present and (seal_intact is not None or shown or points):
        raise JiliangError("an instrument that is not present cannot be checked", code="validation_failed",
                           details=[Problem(row=None, field="present", reason="checks given for an absent instrument")])
    verification = None
    if points:
        institution = spot_check_institution(inst.region_id)
        if institution is None:
            raise JiliangError("no verification institute covers this district for the spot-check",
                               code="validation_failed",
                               details=[Problem(row=None, field="points", reason="no verification institute")])
        verification = verification_record(
            actor=_AssignedInspector(actor, inst.region_id), device_id=inst.device_id, kind="spot_check",
            date=on.isoformat(), institution_uscc=institution.uscc, points=points,
            verifier=str(getattr(actor, "username", ""))[:100])
    sw_match = shown.lower() == inst.sw_hash.strip().lower() if shown and inst.sw_hash.strip() else None
    problems = []
    if not present:
        problems.append("not_present")
    if verification is not None and not verification.conforming:
        problems.append("spot_check_nonconforming")
    if seal_intact is False:
        problems.append("seal_broken")
    if sw_match is False:
        problems.append("software_mismatch")
    violations = [p for p in problems if p in case_rules()["violations"]]
    finding = Finding.objects.create(
        task=task, instrument=inst, present=present, seal_intact=seal_intact, sw_hash_shown=shown[:128],
        sw_hash_filed=inst.sw_hash[:128], sw_match=sw_match, verification=verification, conforming=not violations,
        problems=problems, note=note.strip()[:500], recorded_by=str(getattr(actor, "username", actor))[:150])
    log_change(actor=actor, obj=finding, action="create")
    if task.status == InspectionTask.Status.ASSIGNED:
        before = snapshot(task)
        task.status, task.started_at = InspectionTask.Status.IN_PROGRESS, timezone.now()
        task.save(update_fields=["status", "started_at"])
        log_change(actor=actor, obj=task, action="update", before=before)
    if violations:
        _case_open(actor=actor, task=task, finding=finding, violations=violations, on=on)
        credit_event_record(actor=actor, entity_id=task.entity_id, kind="spot_check_failed", occurred_on=on,
                            source=f"task:{task.pk}", note=",".join(violations))
    return finding


def _case_open(*, actor: Any, task: InspectionTask, finding: Finding, violations: list[str], on: dt.date) -> Case:
    rules = case_rules()["violations"]
    chosen = [rules[v] for v in violations]
    case = Case.objects.create(
        task=task, finding=finding, entity_id=task.entity_id,
        violations=[{"key": v, "label": str(rules[v]["label"])} for v in violations],
        legal_basis="\n".join(dict.fromkeys(str(r["legal_basis"]).strip() for r in chosen)),
        order="\n".join(dict.fromkeys(str(r["order"]).strip() for r in chosen)),
        deadline=on + dt.timedelta(days=min(int(r["deadline_days"]) for r in chosen)))
    log_change(actor=actor, obj=case, action="create")
    return case


@transaction.atomic
def task_complete(*, actor: Any, task_id: int, summary: str = "") -> InspectionTask:
    """Close a task once every listed instrument has a finding; the conclusion follows the findings, and a
    clean inspection records ``spot_check_passed`` in the entity's credit file."""
    task = _task(actor, task_id)
    if task.status not in (InspectionTask.Status.ASSIGNED, InspectionTask.Status.IN_PROGRESS):
        raise JiliangError(f"a {task.status} task cannot be completed", code="invalid_state")
    done = set(Finding.objects.filter(task=task).values_list("instrument_id", flat=True))
    missing = [d for pk, d in task_instruments(task).values_list("pk", "device_id") if pk not in done]
    if missing:
        raise JiliangError(f"{len(missing)} instrument(s) have no finding yet", code="validation_failed",
                           details=[Problem(row=None, field="instrument", reason="no finding", value=d)
                                    for d in missing])
    failed = Finding.objects.filter(task=task, conforming=False).exists()
    before = snapshot(task)
    task.status, task.completed_at = InspectionTask.Status.COMPLETED, timezone.now()
    task.started_at = task.started_at or task.completed_at
    task.conclusion = InspectionTask.Conclusion.NONCONFORMING if failed else InspectionTask.Conclusion.CONFORMING
    task.summary = summary.strip()[:500]
    task.save(update_fields=["status", "completed_at", "started_at", "conclusion", "summary"])
    log_change(actor=actor, obj=task, action="update", before=before)
    if not failed:
        credit_event_record(actor=actor, entity_id=task.entity_id, kind="spot_check_passed",
                            occurred_on=timezone.localdate(), source=f"task:{task.pk}")
    return task


@transaction.atomic
def case_rectify(*, actor: Any, case_id: int, note: str, rectified_on: dt.date | None = None) -> Case:
    """Record the rectification (整改).  Reported by the entity itself the case becomes ``rectified`` and
    waits for confirmation; recorded or confirmed by a regulator or one of the task's inspectors it is
    ``closed`` and ``rectification_done`` enters the entity's credit file."""
    if not Case.objects.restrict(actor, "view").filter(pk=case_id).exists():
        raise NotFound(f"case {case_id} not found")
    case = Case.objects.restrict(actor, "change").select_for_update(of=("self",)).filter(pk=case_id).first()
    if case is None:
        raise PermissionDenied("you may not follow up this case")
    if case.status == Case.Status.CLOSED:
        raise JiliangError("the case is closed", code="invalid_state")
    if not note.strip():
        raise JiliangError("describe the rectification", code="validation_failed",
                           details=[Problem(row=None, field="note", reason="required")])
    on = _date(rectified_on)
    if on < timezone.localdate(case.opened_at):
        raise JiliangError("the rectification cannot precede the case", code="validation_failed")
    scope = Scope.of(actor)
    by_entity = not scope.is_admin and scope.role in ORG_ROLES
    if by_entity and case.status == Case.Status.RECTIFIED:
        raise JiliangError("the rectification is already reported and awaits confirmation", code="invalid_state")
    before = snapshot(case)
    case.rectification_note, case.rectified_on = note.strip()[:500], on
    if by_entity:
        case.status = Case.Status.RECTIFIED
    else:
        case.status, case.closed_at = Case.Status.CLOSED, timezone.now()
    case.save(update_fields=["rectification_note", "rectified_on", "status", "closed_at"])
    log_change(actor=actor, obj=case, action="update", before=before)
    if case.status == Case.Status.CLOSED:
        credit_event_record(actor=actor, entity_id=case.entity_id, kind="rectification_done", occurred_on=on,
                            source=f"case:{case.pk}")
    return case


@dataclass
class EscalationReport:
    reminded: int
    escalated: int


@transaction.atomic
def case_escalate_overdue(*, actor: Any, today: dt.date | None = None) -> EscalationReport:
    """The daily follow-up: an open case whose deadline is near becomes ``rectification_due``; one whose
    deadline has passed without a rectification becomes ``escalated`` (逾期未整改, handed to enforcement).
    Every change of state is logged."""
    today = today or timezone.localdate()
    reminder = int(case_rules().get("reminder_days", 3))
    reminded = escalated = 0
    active = (Case.Status.OPEN, Case.Status.RECTIFICATION_DUE)
    for case in Case.objects.select_for_update(of=("self",)).filter(status__in=active,
                                                        deadline__lte=today + dt.timedelta(days=reminder)):
        before = snapshot(case)
        if case.deadline < today:
            case.status, case.escalated_at = Case.Status.ESCALATED, timezone.now()
            escalated += 1
        elif case.status == Case.Status.OPEN:
            case.status = Case.Status.RECTIFICATION_DUE
            reminded += 1
        else:
            continue
        case.save(update_fields=["status", "escalated_at"])
        log_change(actor=actor, obj=case, action="update", before=before)
    return EscalationReport(reminded=reminded, escalated=escalated)


@transaction.atomic
def conflict_declare(*, actor: Any, organization_id: int, reason: str, inspector_id: int | None = None
                     ) -> ConflictDeclaration:
    """Declare a conflict of interest (利益冲突声明): an inspector for itself, a regulator for an inspector in
    its region.  Later draws never give the inspector a task on this organisation; declaring twice returns
    the first declaration."""
    scope = Scope.of(actor)
    if scope.role == Role.INSPECTOR and not scope.is_admin:
        own = getattr(actor, "pk", None)
        if own is None or inspector_id not in (None, own):
            raise PermissionDenied("an inspector declares only its own conflicts")
        inspector_id = int(own)
    elif not (scope.is_admin or scope.role == Role.REGULATOR):
        raise PermissionDenied("only inspectors and regulators declare conflicts of interest")
    if inspector_id is None:
        raise JiliangError("name the inspector", code="validation_failed",
                           details=[Problem(row=None, field="inspector_id", reason="required")])
    inspector = User.objects.filter(pk=inspector_id, role=Role.INSPECTOR).first()
    if inspector is None or (scope.role == Role.REGULATOR and not scope.is_admin and not (
            scope.region_prefix and (inspector.region_id or "").startswith(scope.region_prefix))):
        raise NotFound(f"no inspector {inspector_id} in your scope")
    if not Organization.objects.filter(pk=organization_id).exists():
        raise NotFound(f"organization {organization_id} not found")
    if not reason.strip():
        raise JiliangError("give the reason for the conflict", code="validation_failed",
                           details=[Problem(row=None, field="reason", reason="required")])
    existing = ConflictDeclaration.objects.filter(inspector=inspector, organization_id=organization_id).first()
    if existing is not None:
        return existing
    decl = ConflictDeclaration.objects.create(inspector=inspector, organization_id=organization_id,
                                              reason=reason.strip()[:300],
                                              declared_by=str(getattr(actor, "username", actor))[:150])
    log_change(actor=actor, obj=decl, action="create")
    return decl


@transaction.atomic
def results_publish(*, actor: Any, plan_id: int) -> InspectionPlan:
    """Publish a plan's results (一公开) once the draw is public and every assigned task is completed: per
    target the name, the date, the conclusion and the case outcome appear on the public plan page and API."""
    plan = _plan(actor, plan_id)
    if plan.status != InspectionPlan.Status.PUBLISHED:
        raise JiliangError("publish the draw before its results", code="invalid_state")
    if plan.results_published_at is not None:
        raise JiliangError("the results are already published", code="invalid_state")
    open_tasks = list(plan.tasks.filter(status__in=[InspectionTask.Status.ASSIGNED,
                                                    InspectionTask.Status.IN_PROGRESS])
                      .values_list("entity__uscc", flat=True))
    if open_tasks:
        raise JiliangError(f"{len(open_tasks)} task(s) are not completed", code="invalid_state",
                           details=[Problem(row=None, field="task", reason="not completed", value=u)
                                    for u in open_tasks])
    before = snapshot(plan)
    plan.results_published_at = timezone.now()
    plan.save(update_fields=["results_published_at"])
    log_change(actor=actor, obj=plan, action="update", before=before)
    return plan


# ------------------------------------------------------------------------------------- alert follow-up
#
# A confirmed alert (已确认预警) can open an ad-hoc inspection task (预警核查) on the instrument's owner: not part
# of a random plan (no plan), its two inspectors drawn by jiliang-pairing-v1 with a seed fixed by the alert id
# (docs/draw.md §7), so anyone can recompute the pair from the published inputs.

ALERT_TASK_VARIANT = "jiliang-alert-task-v1"


def alert_task_seed(alert_id: int) -> str:
    """The pairing seed of an alert task: ``SHA-256("jiliang-alert-task-v1" 0x00 alert id)``, in hex."""
    return hashlib.sha256(f"{ALERT_TASK_VARIANT}\x00{int(alert_id)}".encode()).hexdigest()


def alert_inspector_pool(region_code: str) -> list[User]:
    """The inspectors an alert task draws from: the active inspectors of the alert's city (its district's
    first four digits), by id — the city's enforcement team covers every district."""
    city = region_prefix(region_code[:4] + "00")
    return list(User.objects.filter(role=Role.INSPECTOR, is_active=True,
                                    region__code__startswith=city).order_by("id"))


@transaction.atomic
def alert_task_open(*, actor: Any, alert_id: int) -> InspectionTask:
    """Open the inspection task of a confirmed alert (预警核查) on the owner of the alert's instrument, with two
    inspectors drawn by jiliang-pairing-v1 seeded from the alert id (:func:`alert_task_seed`; the pool is
    :func:`alert_inspector_pool`, declared conflicts and the owner's previous pair are respected as in a
    plan's draw).  Only a regulator who may decide the alert (its region) or an administrator opens it; the
    alert must be confirmed.  An alert has at most one task: asking again returns it unchanged."""
    from jiliang.monitoring.models import Alert

    if not Alert.objects.restrict(actor, "view").filter(pk=alert_id).exists():
        raise NotFound(f"alert {alert_id} not found")
    scope = Scope.of(actor)
    if not (scope.is_admin or scope.role == Role.REGULATOR) or \
            not Alert.objects.restrict(actor, "change").filter(pk=alert_id).exists():
        raise PermissionDenied("only a regulator of the alert's region opens an inspection task for it")
    alert = Alert.objects.select_for_update(of=("self",)).select_related("owner").get(pk=alert_id)
    existing = InspectionTask.objects.filter(alert=alert).first()
    if existing is not None:
        return existing
    if alert.status != Alert.Status.CONFIRMED:
        raise JiliangError("only a confirmed alert opens an inspection task", code="invalid_state", status=409)
    owner = alert.owner
    pool = alert_inspector_pool(alert.region_id)
    ids = [str(u.pk) for u in pool]
    conflicts = {owner.uscc: [str(i) for i in ConflictDeclaration.objects.filter(
        organization=owner, inspector_id__in=[u.pk for u in pool]).values_list("inspector_id", flat=True)]}
    last = (InspectionTask.objects.filter(entity=owner, inspector_1__isnull=False, inspector_2__isnull=False)
            .order_by("-created_at", "-id").first())
    previous = {owner.uscc: [str(last.inspector_1_id), str(last.inspector_2_id)]} if last else {}
    seed = alert_task_seed(alert.pk)
    bundle = pairing.pairing_bundle(seed_hex=seed, targets=[owner.uscc], inspectors=ids, conflicts=conflicts,
                                    previous=previous)
    pair = bundle["assignments"][0]["inspectors"]
    task = InspectionTask.objects.create(
        alert=alert, entity=owner, inspector_1_id=int(pair[0]) if pair else None,
        inspector_2_id=int(pair[1]) if pair else None,
        status=InspectionTask.Status.ASSIGNED if pair else InspectionTask.Status.UNASSIGNED,
        unassigned_reason=bundle["assignments"][0]["reason"],
        pairing={"variant": ALERT_TASK_VARIANT, "alert_id": alert.pk, "seed_hex": seed, **bundle})
    log_change(actor=actor, obj=task, action="create")
    return task
