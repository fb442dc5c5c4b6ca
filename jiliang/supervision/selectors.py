"""Reads for the inspection-plan pages (双随机、一公开), always through the restricted querysets.

A plan is seen by the people :mod:`jiliang.supervision.policy` lets see it; a published plan is also public.
The draw's secret (``secret_hex``) and the seed derived from it leave this module only through
:func:`plan_publication`, which returns nothing before the plan is published.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Case as Case_
from django.db.models import Func, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from jiliang.accounts.roles import Role, Scope
from jiliang.core.errors import NotFound
from jiliang.engine import credit
from jiliang.engine.credit import GRADES
from jiliang.portal.templatetags.jiliang_ui import localized_name
from jiliang.registry.models import Instrument, InstrumentType, Organization, Region
from jiliang.supervision.models import (
    Case,
    ConflictDeclaration,
    CreditConfigVersion,
    CreditEvent,
    CreditGrade,
    Finding,
    InspectionPlan,
    InspectionTask,
)

Status = InspectionPlan.Status
# The lifecycle in order, with the timestamp field that records when each step was reached.
LIFECYCLE: tuple[tuple[str, str], ...] = (
    (Status.DRAFT, "created_at"),
    (Status.COMMITTED, "committed_at"),
    (Status.DRAWN, "drawn_at"),
    (Status.PUBLISHED, "published_at"),
)
# Badge tone per plan status and per credit grade (CSS classes in static/jiliang/app.css).
STATUS_TONE: dict[str, str] = {Status.DRAFT: "neutral", Status.COMMITTED: "info", Status.DRAWN: "warn",
                               Status.PUBLISHED: "ok"}
GRADE_TONE: dict[str, str] = {"A": "ok", "B": "info", "C": "warn", "D": "danger"}


class JSONArrayLength(Func):
    """The length of a JSON array column, computed by the database (no need to load a large frame)."""

    function = "JSON_ARRAY_LENGTH"
    output_field = IntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="JSONB_ARRAY_LENGTH", **extra)

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="JSON_LENGTH", **extra)


# ------------------------------------------------------------------------------------------ who may do what

def may_create_plan(*, principal: Any) -> bool:
    """Administrators and regulators with a region create plans (the service checks the region again)."""
    scope = Scope.of(principal)
    return scope.is_admin or (scope.role == Role.REGULATOR and bool(scope.region_prefix))


def may_change_plan(*, principal: Any, plan_id: int) -> bool:
    """Whether the central policy lets ``principal`` run this plan's lifecycle (commit, draw, publish)."""
    return InspectionPlan.objects.restrict(principal, "change").filter(pk=plan_id).exists()


def plan_region_choices(*, principal: Any) -> list[Region]:
    """Regions a plan may cover for this person: its own region and the districts in it (all for an admin)."""
    scope = Scope.of(principal)
    qs = Region.objects.order_by("code")
    if scope.is_admin:
        return list(qs)
    if scope.role != Role.REGULATOR or not scope.region_prefix:
        return []
    return list(qs.filter(code__startswith=scope.region_prefix))


def instrument_type_choices() -> list[InstrumentType]:
    """The mandatory-control catalogue is public reference data."""
    return list(InstrumentType.objects.order_by("key"))


# ------------------------------------------------------------------------------------------ plans

def plan_list(*, principal: Any) -> QuerySet[InspectionPlan]:
    """Plans in the person's scope, newest first, with ``frame_size`` and ``drawn_count`` computed by the
    database; the frame, the targets and the secret are not loaded."""
    return (InspectionPlan.objects.restrict(principal, "view").select_related("region")
            .defer("frame", "selected", "secret_hex", "seed_hex")
            .annotate(frame_size=JSONArrayLength("frame"), drawn_count=JSONArrayLength("selected"))
            .order_by("-created_at", "-id"))


@dataclass(frozen=True)
class PlanRow:
    """A plan as the list shows it, with its status badge tone."""

    plan: InspectionPlan
    tone: str


def plan_rows(plans: Iterable[InspectionPlan]) -> list[PlanRow]:
    """The list's rows (no query: the sizes are annotated by :func:`plan_list`)."""
    return [PlanRow(plan=p, tone=STATUS_TONE.get(p.status, "neutral")) for p in plans]


def plan_get(*, principal: Any, pk: int) -> InspectionPlan:
    """One plan in the person's scope, or :class:`NotFound`."""
    plan = InspectionPlan.objects.restrict(principal, "view").select_related("region").filter(pk=pk).first()
    if plan is None:
        raise NotFound(f"plan {pk} not found")
    return plan


def public_plan_get(*, pk: int) -> InspectionPlan:
    """A published plan, for anyone (一公开); :class:`NotFound` before publication."""
    plan = (InspectionPlan.objects.select_related("region")
            .filter(pk=pk, status=Status.PUBLISHED).first())
    if plan is None:
        raise NotFound(f"no published plan {pk}")
    return plan


@dataclass(frozen=True)
class Step:
    """One step of the lifecycle as the detail page shows it."""

    number: int
    status: str
    label: str
    state: str  # "done", "current" or "todo"
    at: dt.datetime | None


def plan_steps(plan: InspectionPlan) -> list[Step]:
    """草稿 → 已承诺 → 已抽取 → 已公开: the steps reached (with when) and the ones still to come."""
    labels = dict(Status.choices)
    reached = [s for s, _f in LIFECYCLE].index(plan.status)
    steps = []
    for i, (status, field) in enumerate(LIFECYCLE):
        state = "current" if i == reached else ("done" if i < reached else "todo")
        steps.append(Step(number=i + 1, status=status, label=str(labels[status]), state=state,
                          at=getattr(plan, field) if i <= reached else None))
    return steps


@dataclass(frozen=True)
class FrameRow:
    """One entity of a frozen frame: its credit code, registered name, grade, weight and whether drawn."""

    uscc: str
    name: str
    grade: str
    weight: float
    drawn: bool

    @property
    def grade_tone(self) -> str:
        return GRADE_TONE.get(self.grade, "neutral")


def _names(usccs: Iterable[str]) -> dict[str, str]:
    """Registered names by credit code, in one query (names of market entities are public under 一公开)."""
    wanted = list(dict.fromkeys(usccs))
    return dict(Organization.objects.filter(uscc__in=wanted).values_list("uscc", "name")) if wanted else {}


def frame_rows(entries: Iterable[Mapping[str, Any]], selected: Iterable[str]) -> list[FrameRow]:
    """The given frame entries as rows with names looked up (one query)."""
    rows = list(entries)
    chosen = set(selected)
    names = _names(str(e["id"]) for e in rows)
    return [FrameRow(uscc=str(e["id"]), name=names.get(str(e["id"]), ""), grade=str(e.get("grade", "")),
                     weight=float(e.get("weight", 1.0)), drawn=str(e["id"]) in chosen) for e in rows]


def plan_frame(plan: InspectionPlan, *, drawn_only: bool = False) -> list[Mapping[str, Any]]:
    """The frozen frame (sorted by credit code as in the commitment), or only the drawn entities."""
    frame: list[Mapping[str, Any]] = sorted(plan.frame, key=lambda e: str(e["id"]))
    if drawn_only:
        chosen = set(plan.selected)
        frame = [e for e in frame if e["id"] in chosen]
    return frame


def plan_targets(plan: InspectionPlan, *, limit: int | None = None) -> list[FrameRow]:
    """The drawn entities (by credit code) with their names and grades; empty before the draw."""
    if plan.status not in (Status.DRAWN, Status.PUBLISHED):
        return []
    chosen = set(plan.selected)
    entries = [e for e in plan_frame(plan) if e["id"] in chosen]
    return frame_rows(entries[:limit] if limit is not None else entries, chosen)


@dataclass(frozen=True)
class GradeSummary:
    """Per grade: the configured share, how many entities the frame holds and how many were drawn."""

    grade: str
    share: float | None
    in_frame: int
    drawn: int

    @property
    def tone(self) -> str:
        return GRADE_TONE.get(self.grade, "neutral")

    @property
    def share_percent(self) -> str:
        """``0.05`` -> ``"5%"``, ``0.125`` -> ``"12.5%"``; ``"—"`` when the plan sets no share for the grade."""
        return "—" if self.share is None else f"{round(self.share * 100, 4):g}%"


def plan_grade_summary(plan: InspectionPlan) -> list[GradeSummary]:
    """One row per grade A–D (counts are zero before the frame is frozen)."""
    shares: Mapping[str, float] = plan.shares or {}
    chosen = set(plan.selected)
    in_frame = dict.fromkeys(GRADES, 0)
    drawn = dict.fromkeys(GRADES, 0)
    for e in plan.frame:
        g = str(e.get("grade", ""))
        if g in in_frame:
            in_frame[g] += 1
            drawn[g] += e["id"] in chosen
    return [GradeSummary(grade=g, share=float(shares[g]) if g in shares else None, in_frame=in_frame[g],
                         drawn=drawn[g]) for g in GRADES]


@dataclass(frozen=True)
class Publication:
    """What becomes public with the plan: the secret, the seed and where the bundle is."""

    secret_hex: str
    seed_hex: str
    published_at: dt.datetime | None


def plan_publication(plan: InspectionPlan) -> Publication | None:
    """The secret and the seed, only once the plan is published (never before: the secret must stay
    private until the draw is public, docs/draw.md §2)."""
    if plan.status != Status.PUBLISHED:
        return None
    return Publication(secret_hex=plan.secret_hex, seed_hex=plan.seed_hex, published_at=plan.published_at)


def type_names(keys: Sequence[str]) -> list[str]:
    """Catalogue names of the plan's instrument types, in the active language ("all types" when none)."""
    if not keys:
        return [_("全部类型")]
    found = {t.key: localized_name(t.name_zh, t.name_en) for t in InstrumentType.objects.filter(key__in=keys)}
    return [found.get(k, k) for k in keys]


# ------------------------------------------------------------------------------------------ inspections

TASK_TONE: dict[str, str] = {"unassigned": "danger", "assigned": "info", "in_progress": "warn", "completed": "ok"}
CASE_ORDER = ("escalated", "rectification_due", "open", "rectified", "closed")
CASE_TONE: dict[str, str] = {"open": "warn", "rectification_due": "warn", "rectified": "info",
                             "escalated": "danger", "closed": "ok"}


def unassigned_reason_text(code: str) -> str:
    """A pairing reason code in the page's language."""
    from jiliang.engine import pairing

    return {pairing.FEWER_THAN_TWO: _("符合条件的执法人员不足两名（已排除申报利益冲突的人员）"),
            pairing.ONLY_PREVIOUS_PAIR: _("符合条件的执法人员只有上次检查该对象的两人")}.get(code, code)


def task_list(*, principal: Any, status: str = "", plan_id: int | None = None) -> QuerySet[InspectionTask]:
    """Inspection tasks (检查任务) in the person's scope, open ones first, newest first."""
    qs = (InspectionTask.objects.restrict(principal, "view")
          .select_related("plan", "alert", "entity", "inspector_1", "inspector_2"))
    if status:
        qs = qs.filter(status=status)
    if plan_id is not None:
        qs = qs.filter(plan_id=plan_id)
    return qs.order_by("completed_at", "-created_at", "-id")


def task_get(*, principal: Any, pk: int) -> InspectionTask:
    """One task in the person's scope, or :class:`NotFound`."""
    task = (InspectionTask.objects.restrict(principal, "view")
            .select_related("plan", "plan__region", "alert", "entity", "inspector_1", "inspector_2")
            .filter(pk=pk).first())
    if task is None:
        raise NotFound(f"task {pk} not found")
    return task


def may_record_findings(*, principal: Any, task: InspectionTask) -> bool:
    """Whether the person is one of the task's two inspectors (or an administrator) and the task is open."""
    return (task.status in (InspectionTask.Status.ASSIGNED, InspectionTask.Status.IN_PROGRESS)
            and InspectionTask.objects.restrict(principal, "change").filter(pk=task.pk).exists())


@dataclass(frozen=True)
class InstrumentRow:
    """One instrument on a task's list with its finding (None while not yet checked)."""

    instrument: Instrument
    finding: Finding | None


def task_rows(task: InspectionTask) -> list[InstrumentRow]:
    """The task's instruments with their findings (two queries).  The task was already scoped, and the
    assignment is what lets its inspectors see these instruments, whatever their own region."""
    from jiliang.supervision.services import task_instruments

    findings = {f.instrument_id: f for f in Finding.objects.filter(task=task).select_related("verification")}
    instruments = task_instruments(task).select_related("instrument_type", "place")
    return [InstrumentRow(instrument=i, finding=findings.get(i.pk)) for i in instruments]


def case_list(*, principal: Any, status: str = "") -> QuerySet[Case]:
    """Cases (案件) in the person's scope: the ones needing action first (by deadline)."""
    qs = Case.objects.restrict(principal, "view").select_related("entity", "task", "finding__instrument")
    if status:
        qs = qs.filter(status=status)
    # escalated and due first, then open, reported, closed last
    rank = Case_(*[When(status=st, then=Value(i)) for i, st in enumerate(CASE_ORDER)], default=Value(9),
                 output_field=IntegerField())
    return qs.annotate(status_rank=rank).order_by("status_rank", "deadline", "-id")


def case_get(*, principal: Any, pk: int) -> Case:
    """One case in the person's scope, or :class:`NotFound`."""
    case = (Case.objects.restrict(principal, "view")
            .select_related("entity", "task__plan", "finding__instrument", "finding__verification")
            .filter(pk=pk).first())
    if case is None:
        raise NotFound(f"case {pk} not found")
    return case


def may_follow_up_case(*, principal: Any, case: Case) -> bool:
    """Whether the person may record (or, for the entity, report) the rectification of an open case."""
    return (case.status != Case.Status.CLOSED
            and Case.objects.restrict(principal, "change").filter(pk=case.pk).exists())


def conflict_list(*, principal: Any) -> QuerySet[ConflictDeclaration]:
    """Declared conflicts of interest (利益冲突声明) in the person's scope, newest first."""
    return ConflictDeclaration.objects.restrict(principal, "view").select_related("inspector", "organization")


def may_declare_conflict(*, principal: Any) -> bool:
    scope = Scope.of(principal)
    return scope.is_admin or scope.role in (Role.INSPECTOR, Role.REGULATOR)


def conflict_organizations(*, principal: Any, query: str = "", limit: int = 50) -> list[Organization]:
    """Organisations an inspector may name in a declaration: those in its region (by name or credit code)."""
    qs = Organization.objects.restrict(principal, "view").order_by("name")
    if query:
        qs = qs.filter(Q(name__icontains=query) | Q(uscc__icontains=query))
    return list(qs[:limit])


@dataclass(frozen=True)
class ResultRow:
    """One target's published result (一公开): public name and credit code, date, conclusion, case outcome.
    Never the inspectors, phones or any other private field."""

    uscc: str
    name: str
    inspected_on: dt.date | None
    conclusion: str
    conclusion_label: str
    case_outcome: str
    case_outcome_label: str

    def as_dict(self) -> dict[str, Any]:
        return {"uscc": self.uscc, "name": self.name,
                "inspected_on": self.inspected_on.isoformat() if self.inspected_on else None,
                "conclusion": self.conclusion, "case_outcome": self.case_outcome}


def _outcome_label(outcome: str) -> str:
    return {"none": _("无案件"), "rectifying": _("整改中"), "rectified": _("已整改"),
            "escalated": _("逾期未整改，已移交")}[outcome]


def _outcome(statuses: list[str]) -> str:
    if not statuses:
        return "none"
    if any(s == Case.Status.ESCALATED for s in statuses):
        return "escalated"
    if all(s == Case.Status.CLOSED for s in statuses):
        return "rectified"
    return "rectifying"


def plan_results(plan: InspectionPlan) -> list[ResultRow] | None:
    """The published results of a plan, or None before the regulator publishes them."""
    if plan.results_published_at is None or plan.status != Status.PUBLISHED:
        return None
    tasks = list(InspectionTask.objects.filter(plan=plan).select_related("entity").order_by("entity__uscc"))
    cases: dict[int, list[str]] = {}
    for task_id, st in Case.objects.filter(task__plan=plan).values_list("task_id", "status"):
        cases.setdefault(task_id, []).append(st)
    labels = dict(InspectionTask.Conclusion.choices)
    out = []
    for t in tasks:
        conclusion = t.conclusion if t.status == InspectionTask.Status.COMPLETED else "not_inspected"
        outcome = _outcome(cases.get(t.pk, []))
        out.append(ResultRow(
            uscc=t.entity.uscc, name=t.entity.name,
            inspected_on=timezone.localdate(t.completed_at) if t.completed_at else None,
            conclusion=conclusion, conclusion_label=str(labels.get(conclusion, _("未检查"))),
            case_outcome=outcome, case_outcome_label=_outcome_label(outcome)))
    return out


# ------------------------------------------------------------------------------------------ credit

def may_view_credit_config(*, principal: Any) -> bool:
    """Every signed-in person sees the credit configuration (信用评价配置): the score is meant to be transparent."""
    from jiliang.registry.policy import VIEW
    from jiliang.supervision.policy import credit_config_q

    scope = Scope.of(principal)
    return scope.is_admin or credit_config_q(scope, VIEW) is not None


def may_change_credit_config(*, principal: Any) -> bool:
    from jiliang.supervision.services import may_change_credit_config as may

    return may(principal)


@dataclass(frozen=True)
class CreditConfigView:
    """The configuration in force with its version (0: built-in defaults) and the stored history."""

    version: int
    config: credit.CreditConfig
    row: CreditConfigVersion | None
    history: list[CreditConfigVersion]


def credit_config_get(*, principal: Any, history: int = 20) -> CreditConfigView:
    """The current credit configuration and its latest versions, for people allowed to see it."""
    if not may_view_credit_config(principal=principal):
        raise NotFound("credit configuration not found")
    rows = list(CreditConfigVersion.objects.restrict(principal, "view").order_by("-version")[:history])
    if not rows:
        return CreditConfigView(version=0, config=credit.CreditConfig.default(), row=None, history=[])
    return CreditConfigView(version=rows[0].version, config=credit.CreditConfig.from_mapping(rows[0].config),
                            row=rows[0], history=rows)


@dataclass(frozen=True)
class ExplanationRow:
    """One event of an entity's credit file as the explanation shows it."""

    event: CreditEvent
    kind: str
    age_days: int
    weight: float
    half_life_days: float
    contribution: float
    exact: float


@dataclass(frozen=True)
class CreditExplanation:
    """An entity's credit explanation (信用档案说明): every event's decayed contribution, their sum, the score
    (base + sum, clamped), the thresholds and the grade; and the stored grade for comparison."""

    entity: Organization
    as_of: dt.date
    config_version: int
    config: credit.CreditConfig
    rows: list[ExplanationRow]
    total: float
    raw_score: float
    score: float
    grade: str
    stored: CreditGrade | None

    @property
    def grade_tone(self) -> str:
        return GRADE_TONE.get(self.grade, "neutral")

    @property
    def thresholds(self) -> list[tuple[str, str]]:
        """``[("A", "≥ 90"), ("B", "≥ 75"), ("C", "≥ 60"), ("D", "< 60")]``."""
        a, b, c = self.config.thresholds
        return [("A", f"≥ {a:g}"), ("B", f"≥ {b:g}"), ("C", f"≥ {c:g}"), ("D", f"< {c:g}")]


def credit_explanation(*, principal: Any, org_id: int, today: dt.date | None = None) -> CreditExplanation:
    """The explanation of one entity's credit score, with the configuration in force, for the regulators of
    the entity's region and the entity itself (:func:`policy.credit_explanation_q`); :class:`NotFound` for
    anyone else."""
    from jiliang.registry.policy import VIEW, apply
    from jiliang.supervision.policy import credit_explanation_q
    from jiliang.supervision.services import credit_entity_events, current_credit_config

    entity = apply(Organization.objects.select_related("region"), credit_explanation_q, principal,
                   VIEW).filter(pk=org_id).first()
    if entity is None:
        raise NotFound(f"no credit file for organization {org_id} in your scope")
    today = today or timezone.localdate()
    version, cfg = current_credit_config()
    events = credit_entity_events(entity.pk, today)
    explained = credit.explain(cfg, [(e.kind, age) for e, age in events], refs=[e for e, _a in events])
    rows = [ExplanationRow(event=r["ref"], kind=r["event"], age_days=int(r["age_days"]), weight=r["weight"],
                           half_life_days=r["half_life_days"], contribution=r["contribution"], exact=r["exact"])
            for r in explained]
    total = float(sum(r.exact for r in rows))
    score = credit.score_one(cfg, [(e.kind, age) for e, age in events])
    return CreditExplanation(entity=entity, as_of=today, config_version=version, config=cfg, rows=rows, total=total,
                             raw_score=cfg.base + total, score=score, grade=credit.grades(cfg, [score])[0],
                             stored=CreditGrade.objects.filter(entity=entity).first())
