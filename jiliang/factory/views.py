"""Pages of 二检合一 (factory verification): the workbench (authorizations, upload with row-level errors,
lots), batch statistics with the chart of batch means in the ±MPE band, a sampling with its operating
characteristic curve, and the public list of authorizations (no sign-in).  Reads through
:mod:`jiliang.factory.selectors`, writes through :mod:`jiliang.factory.upload`."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_safe

from jiliang.accounts.roles import Role, Scope
from jiliang.core.errors import JiliangError, Problem
from jiliang.factory import selectors, upload
from jiliang.factory.forms import UploadForm
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


@scoped
@require_safe
def sampling_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/factory/samplings/<id>/``: the plan (n, Ac, Re), the seed and the serials drawn, the results and the
    plan's operating characteristic curve."""
    s = selectors.sampling_get(principal=request.user, pk=pk)
    return render(request, "factory/sampling.html", {
        "s": s, "results": sorted(s.results.items()), "oc": selectors.oc_curve(s.n, s.ac)})


@require_safe
def public_list(request: HttpRequest) -> HttpResponse:
    """``/public/factory/``: 二检合一 authorizations — name, scope, validity, status (no sign-in)."""
    return render(request, "factory/public_list.html",
                  {"rows": [_labels(r) for r in selectors.public_authorizations()]})
