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
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.registry.views import scoped
from jiliang.supervision import selectors, services
from jiliang.supervision.forms import DrawForm, PlanCreateForm
from jiliang.supervision.models import InspectionPlan

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
                              types=selectors.instrument_type_choices())
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
    })
    response["X-Robots-Tag"] = "noindex"
    return response
