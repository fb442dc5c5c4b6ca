"""Pages of 二检合一 (factory verification): the workbench (authorizations, upload with row-level errors,
lots), batch statistics with the chart of batch means in the ±MPE band, a sampling with its operating
characteristic curve, and the public list of authorizations (no sign-in).  Then the steps
of the chain: authorizations (apply, assess, grant, renew, suspend, reinstate, revoke), delivered lots
(accept or refuse, order sampling), installation, sampling results with the penalty ladder, recalls.

Reads through :mod:`jiliang.factory.selectors`, writes through :mod:`jiliang.factory.services` and
:mod:`jiliang.factory.upload`.  Which buttons a page offers is asked of the selectors (state machine +
policy); a row outside the person's scope is a 404, a step they may not take a 403, and any other refusal
of a service is shown with its reason on the page, nothing changed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from jiliang.accounts.roles import Role, Scope
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied, Problem
from jiliang.engine import factory as rules
from jiliang.factory import selectors, services, upload
from jiliang.factory.forms import (
    EVENT_LABELS,
    REASON_REQUIRED,
    ApplyForm,
    AuthorizationFilterForm,
    InstallForm,
    LotFilterForm,
    RecallForm,
    RectificationForm,
    RejectForm,
    ReplaceForm,
    SamplingOpenForm,
    SamplingResultsForm,
    TransitionForm,
    UploadForm,
    show_refusal,
)
from jiliang.factory.models import AuthStatus, LotStatus, UnitStatus
from jiliang.registry.tabular import read_table
from jiliang.registry.views import scoped

STATUS_TONE = {"granted": "ok", "applied": "info", "assessing": "info", "rejected": "muted", "suspended": "warn",
               "revoked": "danger", "expired": "muted"}
STATUS_LABEL = {"granted": gettext_lazy("有效"), "applied": gettext_lazy("已申请"), "assessing": gettext_lazy("考核中"),
                "rejected": gettext_lazy("未通过"), "suspended": gettext_lazy("已暂停"),
                "revoked": gettext_lazy("已取消"), "expired": gettext_lazy("已过期")}
STAGE_LABEL = {"clear": gettext_lazy("无不合格"), "batch_returned": gettext_lazy("整批退回"),
               "rectifying": gettext_lazy("限期整改（停止销售）"), "rectified": gettext_lazy("整改合格"),
               "suspended": gettext_lazy("停止试点并公示"), "revoked": gettext_lazy("取消资质")}


def _labels(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "tone": STATUS_TONE.get(row["status"], "neutral"), "status_label": str(STATUS_LABEL[row["status"]]),
            "stage_label": str(STAGE_LABEL.get(row["penalty_stage"], row["penalty_stage"]))}


@scoped
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    """``/factory/``: authorizations in scope, lots, samplings; a manufacturer uploads its data here."""
    scope = Scope.of(request.user)
    may_upload = scope.is_admin or scope.role == Role.MANUFACTURER
    form = UploadForm(request.POST or None, request.FILES or None) if may_upload else None
    problems: list[Problem] = []
    error = ""
    if request.method == "POST" and form is not None and form.is_valid():
        f = form.cleaned_data["file"]
        try:
            records, rows = upload.table_records(read_table(f.read(), f.name or "upload"))
            res = upload.upload_units(actor=request.user, records=records, rows=rows,
                                      source=f"page:{(f.name or '').rsplit('.', 1)[-1][:8]}")
        except JiliangError as exc:
            error, problems = exc.message, exc.details
        else:
            messages.success(request, _("已上传 %(created)d 台出厂检定记录（%(unchanged)d 台此前已上传，未重复保存）。")
                             % {"created": res.created, "unchanged": res.unchanged})
            return redirect("factory:home")
    auths = list(selectors.authorization_list(principal=request.user).order_by("-id")[:50])
    return render(request, "factory/home.html", {
        "form": form, "problems": problems, "error": error, "authorizations": auths,
        "lots": list(selectors.lot_list(principal=request.user)[:50]),
        "samplings": list(selectors.sampling_list(principal=request.user)[:50]),
        "recalls": list(selectors.recall_list(principal=request.user)[:50]),
        "columns": [*upload.REQUIRED, *upload.OPTIONAL], "status_tone": STATUS_TONE,
    })


@scoped
@require_safe
def batches(request: HttpRequest) -> HttpResponse:
    """``/factory/batches/``: per model, batch and flow point the mean error, its standard deviation and the
    t-test of "mean = 0"; drifting manufacturers flagged; the chart of batch means in the ±MPE band."""
    rows = selectors.batch_stats(principal=request.user)
    flagged = selectors.drifting_manufacturers(rows)
    names = {r.manufacturer_id: r.manufacturer for r in rows}
    return render(request, "factory/batches.html", {
        "rows": rows, "flagged": [{"name": names[m], "batches": b} for m, b in flagged.items()],
        "flagged_ids": set(flagged), "chart": selectors.chart_data(rows) if rows else None,
    })


@require_safe
def public_list(request: HttpRequest) -> HttpResponse:
    """``/public/factory/``: 二检合一 authorizations — name, scope, validity, status (no sign-in)."""
    return render(request, "factory/public_list.html",
                  {"rows": [_labels(r) for r in selectors.public_authorizations()]})


# ------------------------------------------------------------------------------------------------ helpers

def _page(request: HttpRequest, rows: Any, param: str = "page") -> Page[Any]:
    return Paginator(rows, settings.JILIANG_PAGE_SIZE).get_page(request.GET.get(param))


def _refusal(exc: JiliangError) -> str:
    """A service's refusal for a page: the state changed under the person, or the service's reason."""
    if exc.code == "invalid_state":
        return _("当前状态不允许该操作：%(reason)s") % {"reason": exc.message}
    return exc.message


# ----------------------------------------------------------------------------------------- authorizations

@scoped
@require_safe
def authorization_list(request: HttpRequest) -> HttpResponse:
    """``/factory/authorizations/``: the applications and certificates in scope, filtered by status and
    manufacturer; a manufacturer applies from here."""
    form = AuthorizationFilterForm(request.GET or None, statuses=list(AuthStatus.choices),
                                   makers=selectors.authorization_makers(principal=request.user))
    status, maker = "", None
    if form.is_valid():
        status, maker = form.cleaned_data["status"] or "", form.cleaned_data["maker"]
    rows = selectors.authorization_list(principal=request.user, status=status, manufacturer_id=maker)
    page = _page(request, rows.order_by("-applied_on", "-id"))
    return render(request, "factory/authorization_list.html", {
        "form": form, "page": page, "filtered": bool(status or maker),
        "rows": [{"a": a, "tone": STATUS_TONE.get(a.status, "neutral")} for a in page.object_list],
        "may_apply": selectors.may_apply(principal=request.user) is not None,
    })


@scoped
@require_http_methods(["GET", "POST"])
def authorization_apply(request: HttpRequest) -> HttpResponse:
    """``/factory/authorizations/apply/``: the manufacturer's application (申请): the conditions of the
    Shanghai and Tai'an plans with their evidence, the metrologists, the scope (type + DN range)."""
    maker_id = selectors.may_apply(principal=request.user)
    if maker_id is None:
        raise PermissionDenied(_("只有生产企业可以申请二检合一授权"))
    form = ApplyForm(request.POST if request.method == "POST" else None, types=selectors.instrument_type_choices(),
                     initial={"scope_type_0": "water_meter", "scope_dn_min_0": 15, "scope_dn_max_0": 40})
    if request.method == "POST" and form.is_valid():
        try:
            a = services.authorization_apply(actor=request.user, manufacturer_id=maker_id, **form.to_kwargs())
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            show_refusal(form, exc, form.error_fields())
        else:
            messages.success(request, _("已提交二检合一授权申请，等待市场监管部门考核。"))
            return redirect("factory:authorization_detail", pk=a.pk)
    return render(request, "factory/authorization_apply.html", {"form": form})


def _authorization_context(request: HttpRequest, pk: int, *, transition: TransitionForm | None = None,
                           rectification: RectificationForm | None = None, error: str = "") -> dict[str, Any]:
    a = selectors.authorization_get(principal=request.user, pk=pk)
    today = timezone.localdate()
    events = selectors.authorization_actions(principal=request.user, a=a, today=today)
    failed = transition.data.get("event") if transition is not None and transition.is_bound else None
    actions = [{"event": e, "label": EVENT_LABELS[e], "needs_reason": e in REASON_REQUIRED,
                "danger": e in ("reject", "suspend", "revoke"),
                "form": transition if e == failed and transition is not None else TransitionForm(initial={"event": e})}
               for e in events]
    conditions = [{"title": c.title, "source": c.source, "evidence": a.conditions.get(c.key, ""),
                   "required": c.key in rules.REQUIRED_CONDITIONS} for c in rules.CONDITIONS]
    effective = rules.effective_status(rules.AuthState(a.status, a.valid_from, a.valid_until), today)
    return {
        "a": a, "actions": actions, "conditions": conditions, "error": error,
        "status_label": STATUS_LABEL.get(effective, effective), "tone": STATUS_TONE.get(effective, "neutral"),
        "scope": [rules.ScopeItem(str(s.get("instrument_type")), int(s.get("dn_min") or 0),
                                  int(s.get("dn_max") or 0)).label() for s in a.scope],
        "grant_until": rules.certificate_valid_until(today), "today": today,
        "renewal_opens": rules.renewal_opens(a.valid_until) if a.valid_until else None,
        "steps": selectors.penalty_steps(a), "stage_label": STAGE_LABEL,
        "may_rectify": selectors.may_record_rectification(principal=request.user, a=a),
        "rectification": rectification or RectificationForm(),
    }


@scoped
@require_safe
def authorization_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/factory/authorizations/<id>/``: the application or certificate, its penalty ladder, and the steps
    this person may take now."""
    return render(request, "factory/authorization_detail.html", _authorization_context(request, pk))


@scoped
@require_POST
def authorization_transition(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /factory/authorizations/<id>/transition/``: one lifecycle step with its note or reason."""
    form = TransitionForm(request.POST)
    selectors.authorization_get(principal=request.user, pk=pk)  # 404 outside the person's scope
    if form.is_valid():
        event = form.cleaned_data["event"]
        try:
            services.authorization_transition(actor=request.user, authorization_id=pk, event=event,
                                              note=form.cleaned_data["note"])
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            return render(request, "factory/authorization_detail.html",
                          _authorization_context(request, pk, transition=form, error=_refusal(exc)))
        messages.success(request, _("已完成：%(step)s。") % {"step": EVENT_LABELS[event]})
        return redirect("factory:authorization_detail", pk=pk)
    return render(request, "factory/authorization_detail.html",
                  _authorization_context(request, pk, transition=form, error=_("请检查填写的内容。")))


@scoped
@require_POST
def authorization_rectification(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /factory/authorizations/<id>/rectification/``: the regulator's verdict on the rectification."""
    form = RectificationForm(request.POST)
    selectors.authorization_get(principal=request.user, pk=pk)
    if form.is_valid():
        try:
            services.rectification_record(actor=request.user, authorization_id=pk, passed=form.cleaned_data["passed"],
                                          note=form.cleaned_data["note"])
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            return render(request, "factory/authorization_detail.html",
                          _authorization_context(request, pk, rectification=form, error=_refusal(exc)))
        messages.success(request, _("已记录整改结论。"))
        return redirect("factory:authorization_detail", pk=pk)
    return render(request, "factory/authorization_detail.html",
                  _authorization_context(request, pk, rectification=form, error=_("请选择整改结论。")))


# ------------------------------------------------------------------------------------------- lots, install

@scoped
@require_safe
def lot_list(request: HttpRequest) -> HttpResponse:
    """``/factory/lots/``: delivered lots in scope (a utility: those delivered to it), by status."""
    form = LotFilterForm(request.GET or None, statuses=list(LotStatus.choices))
    status = form.cleaned_data["status"] if form.is_valid() else ""
    page = _page(request, selectors.lot_list(principal=request.user, status=status or ""))
    return render(request, "factory/lot_list.html", {
        "form": form, "page": page, "rows": page.object_list, "filtered": bool(status),
        "may_install": selectors.may_install(principal=request.user),
    })


def _lot_context(request: HttpRequest, pk: int, *, reject: RejectForm | None = None,
                 sample: SamplingOpenForm | None = None, error: str = "") -> dict[str, Any]:
    lot = selectors.lot_get(principal=request.user, pk=pk)
    page = _page(request, selectors.lot_units(principal=request.user, lot=lot))
    return {
        "lot": lot, "page": page, "units": page.object_list, "error": error,
        "actions": selectors.lot_actions(principal=request.user, lot=lot),
        "reject_form": reject or RejectForm(), "sample_form": sample or SamplingOpenForm(),
        "samplings": list(lot.samplings.order_by("-id")), "accepted": UnitStatus.ACCEPTED,
    }


@scoped
@require_safe
def lot_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/factory/lots/<id>/``: the lot, its units, acceptance or refusal, ordering a sampling."""
    return render(request, "factory/lot_detail.html", _lot_context(request, pk))


@scoped
@require_POST
def lot_accept(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /factory/lots/<id>/accept/``: the utility's acceptance (验收登记)."""
    try:
        services.lot_accept(actor=request.user, lot_id=pk)
    except (NotFound, PermissionDenied):
        raise
    except JiliangError as exc:
        return render(request, "factory/lot_detail.html", _lot_context(request, pk, error=_refusal(exc)))
    messages.success(request, _("已验收该交付批，可以登记安装。"))
    return redirect("factory:lot_detail", pk=pk)


@scoped
@require_POST
def lot_reject(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /factory/lots/<id>/reject/``: the utility refuses the lot, with its reason (拒收)."""
    form = RejectForm(request.POST)
    if form.is_valid():
        try:
            services.lot_reject(actor=request.user, lot_id=pk, reason=form.cleaned_data["reason"])
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            show_refusal(form, exc)
            return render(request, "factory/lot_detail.html",
                          _lot_context(request, pk, reject=form, error=_refusal(exc)))
        messages.success(request, _("已拒收该交付批，整批退回生产企业。"))
        return redirect("factory:lot_detail", pk=pk)
    return render(request, "factory/lot_detail.html", _lot_context(request, pk, reject=form))


@scoped
@require_POST
def lot_sample(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /factory/lots/<id>/sample/``: order the pre-installation supervisory sampling."""
    form = SamplingOpenForm(request.POST)
    if form.is_valid():
        try:
            s = services.sampling_open(actor=request.user, lot_id=pk, aql=form.cleaned_data["aql"],
                                       level=form.cleaned_data["level"], seed=form.cleaned_data["seed"] or None)
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            show_refusal(form, exc)
            return render(request, "factory/lot_detail.html",
                          _lot_context(request, pk, sample=form, error=_refusal(exc)))
        messages.success(request, _("已抽取 %(n)d 台送检，请录入检定结果。") % {"n": s.n})
        return redirect("factory:sampling_detail", pk=s.pk)
    return render(request, "factory/lot_detail.html", _lot_context(request, pk, sample=form))


@scoped
@require_http_methods(["GET", "POST"])
def install(request: HttpRequest) -> HttpResponse:
    """``/factory/install/``: a utility registers a unit's installation (安装登记); the service refuses a unit
    without a passing factory verification or not yet accepted, with its reason."""
    if not selectors.may_install(principal=request.user):
        raise PermissionDenied(_("只有供水供气企业可以登记安装"))
    makers = selectors.install_makers(principal=request.user)
    initial = {"manufacturer": request.GET.get("maker"), "serial": request.GET.get("serial", "")}
    form = InstallForm(request.POST if request.method == "POST" else None, makers=makers,
                       places=selectors.install_places(principal=request.user), initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            u = services.unit_install(actor=request.user, **form.to_kwargs())
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            show_refusal(form, exc, InstallForm.ERROR_FIELDS)
        else:
            messages.success(request, _("已登记安装：出厂编号 %(serial)s，器具已纳入登记。") % {"serial": u.serial})
            return redirect("factory:install")
    return render(request, "factory/install.html", {"form": form, "has_makers": bool(makers)})


# ------------------------------------------------------------------------------------------------ sampling

def _sampling_context(request: HttpRequest, pk: int, *, form: SamplingResultsForm | None = None,
                      error: str = "") -> dict[str, Any]:
    s = selectors.sampling_get(principal=request.user, pk=pk)
    may_record = selectors.may_record_sampling(principal=request.user, s=s)
    if may_record and form is None:
        form = SamplingResultsForm(serials=list(s.selected), labels=selectors.sampling_point_labels(s))
    return {"s": s, "results": sorted(s.results.items()), "oc": selectors.oc_curve(s.n, s.ac),
            "may_record": may_record, "form": form, "error": error,
            "steps": selectors.sampling_penalty(s), "stage_label": STAGE_LABEL}


@scoped
@require_safe
def sampling_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/factory/samplings/<id>/``: the plan (n, Ac, Re), the seed and the serials drawn, the results (or
    the form to record them), the penalty-ladder step that followed, and the operating characteristic curve."""
    return render(request, "factory/sampling.html", _sampling_context(request, pk))


@scoped
@require_POST
def sampling_results(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /factory/samplings/<id>/results/``: every drawn unit's test points, judged by the rule engine."""
    s = selectors.sampling_get(principal=request.user, pk=pk)
    form = SamplingResultsForm(request.POST, serials=list(s.selected), labels=selectors.sampling_point_labels(s))
    if form.is_valid():
        try:
            s = services.sampling_record(actor=request.user, sampling_id=pk, results=form.results())
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            show_refusal(form, exc, form.error_fields())
            return render(request, "factory/sampling.html", _sampling_context(request, pk, form=form,
                                                                              error=_refusal(exc)))
        if s.defectives:
            messages.warning(request, _("%(d)d 台不合格：整批退回，生产企业进入惩戒阶梯的下一步。")
                             % {"d": s.defectives})
        else:
            messages.success(request, _("抽样检定全部合格，交付批可以验收。"))
        return redirect("factory:sampling_detail", pk=pk)
    return render(request, "factory/sampling.html", _sampling_context(request, pk, form=form))


# --------------------------------------------------------------------------------------------------- recalls

@scoped
@require_http_methods(["GET", "POST"])
def recall_list(request: HttpRequest) -> HttpResponse:
    """``/factory/recalls/``: recalls in scope; the manufacturer (or its regulator) marks a batch."""
    models = selectors.recall_models(principal=request.user)
    form = RecallForm(request.POST if request.method == "POST" else None, models=models) if models else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied(_("只有生产企业或其监管部门可以发起召回"))
        if form.is_valid():
            model_id = form.cleaned_data["model"]
            try:
                r = services.recall_open(actor=request.user, manufacturer_id=selectors.model_maker(model_id),
                                         model_id=model_id, batch=form.cleaned_data["batch"].strip(),
                                         reason=form.cleaned_data["reason"])
            except (NotFound, PermissionDenied):
                raise
            except JiliangError as exc:
                show_refusal(form, exc)
            else:
                messages.success(request, _("已发起召回：%(n)d 台待更换。") % {"n": r.units})
                return redirect("factory:recall_detail", pk=r.pk)
    page = _page(request, selectors.recall_list(principal=request.user))
    return render(request, "factory/recall_list.html", {
        "form": form, "page": page, "rows": page.object_list,
        "batches": selectors.recall_batches(principal=request.user) if form else [],
    })


def _recall_context(request: HttpRequest, pk: int, *, form: ReplaceForm | None = None,
                    error: str = "") -> dict[str, Any]:
    r = selectors.recall_get(principal=request.user, pk=pk)
    page = _page(request, selectors.recall_units(recall=r))
    units = list(page.object_list)
    replacements = selectors.replacement_serials(units)
    return {"r": r, "page": page,
            "units": [{"u": u, "replacement": replacements.get(u.replaced_by_id or 0, "")} for u in units],
            "may_replace": selectors.may_replace(principal=request.user, recall=r), "form": form or ReplaceForm(),
            "error": error, "recalled": UnitStatus.RECALLED}


@scoped
@require_safe
def recall_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/factory/recalls/<id>/``: each recalled unit and its replacement."""
    return render(request, "factory/recall_detail.html", _recall_context(request, pk))


@scoped
@require_POST
def recall_replace(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /factory/recalls/<id>/replace/``: record that a recalled unit was replaced (更换)."""
    form = ReplaceForm(request.POST)
    if form.is_valid():
        try:
            services.recall_replace(actor=request.user, recall_id=pk, serial=form.cleaned_data["serial"].strip(),
                                    replacement_serial=form.cleaned_data["replacement_serial"].strip())
        except (NotFound, PermissionDenied):
            raise
        except JiliangError as exc:
            show_refusal(form, exc)
            return render(request, "factory/recall_detail.html", _recall_context(request, pk, form=form,
                                                                                 error=_refusal(exc)))
        messages.success(request, _("已记录更换：%(old)s → %(new)s。") % {
            "old": form.cleaned_data["serial"], "new": form.cleaned_data["replacement_serial"]})
        return redirect("factory:recall_detail", pk=pk)
    return render(request, "factory/recall_detail.html", _recall_context(request, pk, form=form))
