"""Inspection-plan pages (双随机、一公开): the list with the new-plan form, one plan through its lifecycle
(草稿 → 已承诺 → 已抽取 → 已公开), and the public page of a published plan.

Reads go through :mod:`jiliang.supervision.selectors` (row-level scope), writes through
:mod:`jiliang.supervision.services`.  A plan outside the person's scope is a 404; a step by someone who may
only look (an inspector) is a 403.  The draw's secret is never on a page before the plan is published.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from jiliang.accounts.models import User
from jiliang.accounts.roles import ORG_ROLES, Role, Scope
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.registry.models import Organization
from jiliang.registry.views import scoped
from jiliang.supervision import selectors, services
from jiliang.supervision.forms import (
    ConflictForm,
    CreditConfigForm,
    DrawForm,
    FindingForm,
    PlanCreateForm,
    RectifyForm,
    TaskCompleteForm,
)
from jiliang.supervision.models import Case, InspectionPlan, InspectionTask

# The detail page lists at most this many targets above the (paginated) frame table.
TARGETS_SHOWN = 200


def _page(request: HttpRequest, rows: Any, param: str = "page") -> Page[Any]:
    return Paginator(rows, settings.JILIANG_PAGE_SIZE).get_page(request.GET.get(param))


def _refusal(exc: JiliangError, action: str) -> str:
    """A service's refusal in the page's language (the service's own message is English, for the API)."""
    if exc.code == "invalid_state":
        return _("计划状态已变化，无法执行该操作，请刷新页面后查看。")
    if action == "commit" and exc.code == "validation_failed":
        return _("抽样框为空：该区域内没有拥有所选类型在用器具的市场主体，无法承诺。")
    return exc.message


# ------------------------------------------------------------------------------------------ list and create

@scoped
@require_http_methods(["GET", "POST"])
def plan_list(request: HttpRequest) -> HttpResponse:
    """``/plans/``: the plans in the person's scope; regulators and administrators create new ones here."""
    may_create = selectors.may_create_plan(principal=request.user)
    form = None
    if may_create:
        form = PlanCreateForm(request.POST if request.method == "POST" else None,
                              regions=selectors.plan_region_choices(principal=request.user),
                              types=selectors.instrument_type_choices(),
                              shares=services.current_credit_config()[1].shares)
    if request.method == "POST":
        if form is None:
            raise PermissionDenied(_("只有监管人员可以新建抽查计划"))
        if form.is_valid():
            try:
                plan = services.plan_create(actor=request.user, **form.to_kwargs())
            except (NotFound, PermissionDenied):
                raise  # 404 / 403 through @scoped
            except JiliangError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, _("已新建抽查计划“%(name)s”，下一步：承诺。") % {"name": plan.name})
                return redirect("supervision:plan_detail", pk=plan.pk)
    page = _page(request, selectors.plan_list(principal=request.user))
    return render(request, "supervision/plan_list.html", {
        "page": page, "rows": selectors.plan_rows(page.object_list), "form": form,
    })


# ------------------------------------------------------------------------------------------ one plan

def _detail_context(request: HttpRequest, plan: InspectionPlan, draw_form: DrawForm | None = None
                    ) -> dict[str, Any]:
    drawn_only = request.GET.get("drawn") == "1" and plan.status in (InspectionPlan.Status.DRAWN,
                                                                      InspectionPlan.Status.PUBLISHED)
    frame_page = _page(request, selectors.plan_frame(plan, drawn_only=drawn_only))
    targets = selectors.plan_targets(plan, limit=TARGETS_SHOWN)
    return {
        "plan": plan,
        "status_tone": selectors.STATUS_TONE.get(plan.status, "neutral"),
        "steps": selectors.plan_steps(plan),
        "may_change": selectors.may_change_plan(principal=request.user, plan_id=plan.pk),
        "draw_form": draw_form or DrawForm(),
        "type_names": selectors.type_names(plan.instrument_types),
        "grades": selectors.plan_grade_summary(plan),
        "frame_size": len(plan.frame),
        "frame_page": frame_page,
        "frame_rows": selectors.frame_rows(list(frame_page.object_list), plan.selected),
        "drawn_only": drawn_only,
        "targets": targets,
        "targets_total": len(plan.selected),
        "targets_shown": TARGETS_SHOWN,
        "publication": selectors.plan_publication(plan),
        "bundle_url": reverse("api:plan_bundle", args=[plan.pk]),
        "public_url": reverse("supervision:public_plan", args=[plan.pk]),
        "tasks": list(selectors.task_list(principal=request.user, plan_id=plan.pk)[:TARGETS_SHOWN]),
        "task_tones": selectors.TASK_TONE,
        "results": selectors.plan_results(plan),
    }


@scoped
@require_safe
def plan_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/plans/<id>/``: the lifecycle steps and the action for the current one, the commitment, the frame
    and the targets; the secret and the seed only once published."""
    plan = selectors.plan_get(principal=request.user, pk=pk)
    return render(request, "supervision/plan_detail.html", _detail_context(request, plan))


@scoped
@require_POST
def plan_commit(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /plans/<id>/commit/``: freeze the frame and publish the commitment."""
    try:
        plan = services.plan_commit(actor=request.user, plan_id=pk)
    except (NotFound, PermissionDenied):
        raise
    except JiliangError as exc:
        messages.error(request, _refusal(exc, "commit"))
    else:
        messages.success(request, _("已冻结抽样框（%(n)s 个市场主体）并生成承诺。下一步：确定信标值并抽取。")
                         % {"n": len(plan.frame)})
    return redirect("supervision:plan_detail", pk=pk)


@scoped
@require_POST
def plan_draw(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /plans/<id>/draw/``: draw with the beacon value entered after the commitment."""
    form = DrawForm(request.POST)
    if not form.is_valid():
        plan = selectors.plan_get(principal=request.user, pk=pk)
        if not selectors.may_change_plan(principal=request.user, plan_id=plan.pk):
            raise PermissionDenied(_("您无权执行该抽查计划"))
        return render(request, "supervision/plan_detail.html", _detail_context(request, plan, draw_form=form),
                      status=400)
    try:
        plan = services.plan_draw(actor=request.user, plan_id=pk, beacon=form.cleaned_data["beacon"])
    except (NotFound, PermissionDenied):
        raise
    except JiliangError as exc:
        messages.error(request, _refusal(exc, "draw"))
    else:
        messages.success(request, _("抽取完成：抽中 %(n)s 个市场主体。核对无误后请公开抽取结果。")
                         % {"n": len(plan.selected)})
    return redirect("supervision:plan_detail", pk=pk)


@scoped
@require_POST
def plan_publish(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /plans/<id>/publish/``: make the secret, the frame and the targets public."""
    try:
        services.plan_publish(actor=request.user, plan_id=pk)
    except (NotFound, PermissionDenied):
        raise
    except JiliangError as exc:
        messages.error(request, _refusal(exc, "publish"))
    else:
        messages.success(request, _("抽取结果已公开，任何人都可以复核。"))
    return redirect("supervision:plan_detail", pk=pk)


# ------------------------------------------------------------------------------------------ public

@require_safe
def public_plan(request: HttpRequest, pk: int) -> HttpResponse:
    """``/public/plans/<id>/`` (no sign-in): a published plan's commitment, beacon, targets and how to
    check the draw; 404 before publication."""
    try:
        plan = selectors.public_plan_get(pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    targets = _page(request, selectors.plan_frame(plan, drawn_only=True))
    response = render(request, "supervision/public_plan.html", {
        "plan": plan,
        "type_names": selectors.type_names(plan.instrument_types),
        "grades": selectors.plan_grade_summary(plan),
        "frame_size": len(plan.frame),
        "targets_page": targets,
        "targets": selectors.frame_rows(list(targets.object_list), plan.selected),
        "publication": selectors.plan_publication(plan),
        "bundle_url": reverse("api:plan_bundle", args=[plan.pk]),
        "results": selectors.plan_results(plan),
        "results_url": reverse("api:plan_results", args=[plan.pk]),
    })
    response["X-Robots-Tag"] = "noindex"
    return response


# ------------------------------------------------------------------------------------------ inspections
# Tasks (检查任务) with the phone form for findings, cases (案件) and their rectification, conflict
# declarations (利益冲突声明), and the publication of results (一公开).

def _problem_text(exc: JiliangError) -> str:
    """A service's refusal with its per-field reasons (the reasons come from the MPE engine or the service)."""
    if exc.code == "invalid_state":
        return _("状态已变化，无法执行该操作，请刷新页面后查看。")
    reasons = "；".join(str(p.reason) for p in exc.details if p.reason)
    return f"{exc.message}（{reasons}）" if reasons else exc.message


@scoped
@require_safe
def task_list(request: HttpRequest) -> HttpResponse:
    """``/tasks/``: inspection tasks in the person's scope (an inspector: the ones it was drawn for)."""
    status = request.GET.get("status", "")
    if status not in dict(InspectionTask.Status.choices):
        status = ""
    page = _page(request, selectors.task_list(principal=request.user, status=status))
    return render(request, "supervision/task_list.html", {
        "page": page, "tasks": list(page.object_list), "status": status,
        "statuses": InspectionTask.Status.choices, "tones": selectors.TASK_TONE,
    })


def _task_context(request: HttpRequest, task: InspectionTask,
                  bound: tuple[int, FindingForm] | None = None) -> dict[str, Any]:
    may_record = selectors.may_record_findings(principal=request.user, task=task)
    rows = []
    for row in selectors.task_rows(task):
        form = None
        if may_record and row.finding is None:
            pk = row.instrument.pk
            form = bound[1] if bound and bound[0] == pk else FindingForm(
                instrument_id=pk, is_scale=row.instrument.instrument_type_id == "scale", prefix=f"i{pk}")
        rows.append({"instrument": row.instrument, "finding": row.finding, "form": form})
    return {
        "task": task, "rows": rows, "may_record": may_record,
        "tone": selectors.TASK_TONE.get(task.status, "neutral"),
        "reason": selectors.unassigned_reason_text(task.unassigned_reason) if task.unassigned_reason else "",
        "checked": sum(1 for r in rows if r["finding"] is not None),
        "cases": list(selectors.case_list(principal=request.user).filter(task=task)),
        "case_tones": selectors.CASE_TONE, "complete_form": TaskCompleteForm(),
        "alert_title": _alert_title(task),
    }


def _alert_title(task: InspectionTask) -> str:
    """The title of the detector whose confirmed alert opened the task (预警核查), or "" for a plan's task."""
    if task.alert is None:
        return ""
    from jiliang.monitoring.selectors import detector_title

    return detector_title(task.alert.detector)


@scoped
@require_safe
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/tasks/<id>/``: the entity, the two inspectors and each instrument with its finding or the form."""
    task = selectors.task_get(principal=request.user, pk=pk)
    return render(request, "supervision/task_detail.html", _task_context(request, task))


@scoped
@require_POST
def finding_create(request: HttpRequest, pk: int, instrument_id: int) -> HttpResponse:
    """``POST /tasks/<id>/instruments/<instrument>/finding/``: one instrument's finding; a failure opens a case."""
    task = selectors.task_get(principal=request.user, pk=pk)
    inst = next((r.instrument for r in selectors.task_rows(task) if r.instrument.pk == instrument_id), None)
    if inst is None:
        raise Http404("not on the task's list")
    form = FindingForm(request.POST, instrument_id=instrument_id, is_scale=inst.instrument_type_id == "scale",
                       prefix=f"i{instrument_id}")
    if form.is_valid():
        kwargs = form.to_kwargs()
        kwargs["instrument_id"] = instrument_id
        try:
            finding = services.finding_record(actor=request.user, task_id=pk, **kwargs)
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            form.add_error(None, _problem_text(exc))
        else:
            if finding.conforming:
                messages.success(request, _("已记录 %(device)s 的检查结果：未发现问题。") % {"device": inst.device_id})
            else:
                messages.error(request, _("已记录 %(device)s 的检查结果：不合格，已立案并责令改正。")
                               % {"device": inst.device_id})
            return redirect(f"{reverse('supervision:task_detail', args=[pk])}#instrument-{instrument_id}")
    task = selectors.task_get(principal=request.user, pk=pk)
    return render(request, "supervision/task_detail.html", _task_context(request, task, bound=(instrument_id, form)),
                  status=400)


@scoped
@require_POST
def task_complete(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /tasks/<id>/complete/``: close the task once every instrument has a finding."""
    form = TaskCompleteForm(request.POST)
    summary = form.cleaned_data["summary"] if form.is_valid() else ""
    try:
        services.task_complete(actor=request.user, task_id=pk, summary=summary)
    except (NotFound, PermissionDenied):
        raise
    except JiliangError as exc:
        messages.error(request, _("还有器具未记录检查结果，不能完成任务。") if exc.code == "validation_failed"
                       else _problem_text(exc))
    else:
        messages.success(request, _("检查任务已完成。"))
    return redirect("supervision:task_detail", pk=pk)


@scoped
@require_safe
def case_list(request: HttpRequest) -> HttpResponse:
    """``/cases/``: cases in the person's scope, the ones needing action first."""
    status = request.GET.get("status", "")
    if status not in dict(Case.Status.choices):
        status = ""
    page = _page(request, selectors.case_list(principal=request.user, status=status))
    return render(request, "supervision/case_list.html", {
        "page": page, "cases": list(page.object_list), "status": status, "statuses": Case.Status.choices,
        "tones": selectors.CASE_TONE, "today": timezone.localdate(),
    })


def _case_context(request: HttpRequest, case: Case, form: RectifyForm | None = None) -> dict[str, Any]:
    scope = Scope.of(request.user)
    return {"case": case, "tone": selectors.CASE_TONE.get(case.status, "neutral"),
            "may_follow_up": selectors.may_follow_up_case(principal=request.user, case=case),
            "by_entity": not scope.is_admin and scope.role in ORG_ROLES,
            "form": form or RectifyForm(), "today": timezone.localdate()}


@scoped
@require_safe
def case_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/cases/<id>/``: the violation, legal basis, order, deadline and the rectification."""
    case = selectors.case_get(principal=request.user, pk=pk)
    return render(request, "supervision/case_detail.html", _case_context(request, case))


@scoped
@require_POST
def case_rectify(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /cases/<id>/rectify/``: the entity reports its rectification, a regulator or inspector closes."""
    form = RectifyForm(request.POST)
    if form.is_valid():
        try:
            case = services.case_rectify(actor=request.user, case_id=pk, note=form.cleaned_data["note"],
                                         rectified_on=form.cleaned_data["rectified_on"])
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            form.add_error(None, _problem_text(exc))
        else:
            messages.success(request, _("案件已结案，整改完成已记入信用档案。") if case.status == Case.Status.CLOSED
                             else _("已报告整改情况，等待监管人员确认。"))
            return redirect("supervision:case_detail", pk=pk)
    case = selectors.case_get(principal=request.user, pk=pk)
    return render(request, "supervision/case_detail.html", _case_context(request, case, form), status=400)


@scoped
@require_http_methods(["GET", "POST"])
def conflict_list(request: HttpRequest) -> HttpResponse:
    """``/conflicts/``: declared conflicts of interest; inspectors declare their own, regulators for
    inspectors in their region."""
    may_declare = selectors.may_declare_conflict(principal=request.user)
    for_self = Scope.of(request.user).role == Role.INSPECTOR
    form = ConflictForm(request.POST if request.method == "POST" else None, for_self=for_self) if may_declare \
        else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied(_("只有执法人员和监管人员可以申报利益冲突"))
        if form.is_valid():
            org = Organization.objects.filter(uscc=form.cleaned_data["organization"].strip().upper()).first()
            inspector = None
            if not for_self:
                inspector = User.objects.filter(username=form.cleaned_data.get("inspector", "").strip()).first()
            if org is None:
                form.add_error("organization", _("没有这个统一社会信用代码的单位。"))
            elif not for_self and inspector is None:
                form.add_error("inspector", _("没有这个用户名的执法人员。"))
            else:
                try:
                    services.conflict_declare(actor=request.user, organization_id=org.pk,
                                              reason=form.cleaned_data["reason"],
                                              inspector_id=inspector.pk if inspector else None)
                except (NotFound, PermissionDenied, JiliangError) as exc:
                    form.add_error(None, exc.message)
                else:
                    messages.success(request, _("已申报利益冲突：今后抽取时不会再指派该执法人员检查%(name)s。")
                                     % {"name": org.name})
                    return redirect("supervision:conflict_list")
    page = _page(request, selectors.conflict_list(principal=request.user))
    return render(request, "supervision/conflict_list.html", {
        "page": page, "conflicts": list(page.object_list), "form": form,
    }, status=400 if form is not None and form.errors else 200)


@scoped
@require_POST
def results_publish(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /plans/<id>/results/publish/``: make every target's conclusion and case outcome public."""
    try:
        services.results_publish(actor=request.user, plan_id=pk)
    except (NotFound, PermissionDenied):
        raise
    except JiliangError as exc:
        messages.error(request, _("抽取结果公开且全部检查任务完成后，才能公开检查结果。") if exc.code == "invalid_state"
                       else exc.message)
    else:
        messages.success(request, _("检查结果已公开。"))
    return redirect("supervision:plan_detail", pk=pk)


# ------------------------------------------------------------------------------------------ credit

EVENT_LABELS = {
    "spot_check_passed": _lazy("抽查合格"), "spot_check_failed": _lazy("抽查不合格"),
    "alert_confirmed": _lazy("在线监测告警确认"), "complaint_upheld": _lazy("投诉查实"),
    "case_penalty": _lazy("行政处罚"), "rectification_done": _lazy("整改完成"),
    "commitment_signed": _lazy("签署诚信计量承诺"), "demonstration_award": _lazy("诚信计量示范单位"),
    "verification_overdue": _lazy("逾期未检定"),
}


@scoped
@require_http_methods(["GET", "POST"])
def credit_config(request: HttpRequest) -> HttpResponse:
    """``/credit/config/``: the credit configuration in force (信用评价配置) and its history; administrators and
    city regulators store a new version here."""
    view = selectors.credit_config_get(principal=request.user)
    may_change = selectors.may_change_credit_config(principal=request.user)
    form = CreditConfigForm(request.POST if request.method == "POST" else None, config=view.config) \
        if may_change else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied(_("只有管理员或市级监管人员可以修改信用评价配置"))
        if form.is_valid():
            try:
                row = services.credit_config_update(actor=request.user, config=form.to_config(),
                                                    note=form.cleaned_data["note"])
            except (NotFound, PermissionDenied):
                raise
            except JiliangError as exc:
                if not exc.details:
                    form.add_error(None, exc.message)
                for p in exc.details:
                    form.add_service_problem(p.field, p.reason)
            else:
                messages.success(request, _("已保存信用评价配置（版本 %(v)s），下次信用评定起生效。")
                                 % {"v": row.version})
                return redirect("supervision:credit_config")
    return render(request, "supervision/credit_config.html", {
        "view": view, "config": view.config, "form": form, "may_change": may_change,
        "event_rows": [(k, EVENT_LABELS.get(k, k), w, hl) for k, (w, hl) in view.config.events.items()],
        "event_labels": EVENT_LABELS,
        "shares": [(g, f"{round(view.config.shares[g] * 100, 4):g}%") for g in ("A", "B", "C", "D")],
    })


@scoped
@require_safe
def credit_explanation(request: HttpRequest, org_id: int) -> HttpResponse:
    """``/credit/entities/<id>/``: an entity's credit explanation (信用档案说明) -- each event with its date,
    kind, source, weight, age and decayed contribution, the sum, the thresholds and the grade."""
    exp = selectors.credit_explanation(principal=request.user, org_id=org_id)
    return render(request, "supervision/credit_explanation.html", {
        "exp": exp, "event_labels": EVENT_LABELS,
        "rows": [(r, EVENT_LABELS.get(r.kind, r.kind)) for r in exp.rows],
    })
