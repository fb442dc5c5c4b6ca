"""Alert pages (预警): the list with filters and counts per status, and one alert with its evidence, a chart
of the instrument's telemetry around it, the decision form and the change history.

Reads go through :mod:`jiliang.monitoring.selectors` (row-level scope), the decision through
:func:`jiliang.monitoring.detection.alert_decide`.  An alert outside the person's scope is a 404; a
decision by someone who may only look (an inspector) is a 403.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.monitoring import selectors
from jiliang.monitoring.detection import alert_decide
from jiliang.monitoring.models import Alert
from jiliang.portal.templatetags.jiliang_ui import localized_name
from jiliang.registry.selectors import district_choices
from jiliang.registry.views import scoped

REASON_MAX = 2000


def _page(request: HttpRequest, rows: Any) -> Page[Any]:
    return Paginator(rows, settings.JILIANG_PAGE_SIZE).get_page(request.GET.get("page"))


def _is_partial(request: HttpRequest) -> bool:
    """An htmx request for the results only (not a history restore, which needs the whole page)."""
    return (request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-History-Restore-Request") != "true")


class AlertFilterForm(forms.Form):
    """``/alerts/?status=&detector=&severity=&district=``.  An unknown value drops that filter only."""

    status = forms.ChoiceField(label=gettext_lazy("状态"), required=False)
    detector = forms.ChoiceField(label=gettext_lazy("检测规则"), required=False)
    severity = forms.ChoiceField(label=gettext_lazy("严重程度"), required=False)
    district = forms.ChoiceField(label=gettext_lazy("区县"), required=False)

    def __init__(self, data: Any, *, principal: Any) -> None:
        super().__init__(data, label_suffix="")
        choices: dict[str, list[tuple[str, Any]]] = {
            "status": [("", _("全部状态")), *Alert.Status.choices],
            "detector": [("", _("全部检测规则")), *selectors.detector_choices()],
            "severity": [("", _("全部严重程度")), *Alert.Severity.choices],
            "district": [("", _("全部区县")), *((r.code, localized_name(r.name, r.name_en))
                                              for r in district_choices(principal=principal))],
        }
        for name, values in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = values

    def to_filters(self) -> selectors.AlertFilters:
        """The valid filters (an invalid field counts as empty)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return selectors.AlertFilters(status=data.get("status") or "", detector=data.get("detector") or "",
                                      severity=data.get("severity") or "", region=data.get("district") or "")


class AlertDecisionForm(forms.Form):
    """Triage, confirm or dismiss an alert; the choices are the moves its current status allows."""

    status = forms.ChoiceField(label=gettext_lazy("处理结果"), widget=forms.RadioSelect)
    reason = forms.CharField(label=gettext_lazy("处理说明"), required=False, max_length=REASON_MAX,
                             widget=forms.Textarea(attrs={"rows": 3}),
                             help_text=gettext_lazy("排除预警时必须填写理由；确认或分派时可填写处理意见。"))

    def __init__(self, data: Any, *, alert: Alert) -> None:
        super().__init__(data, label_suffix="")
        field = self.fields["status"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = selectors.next_statuses(alert)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("status") == Alert.Status.DISMISSED and not (data.get("reason") or "").strip():
            self.add_error("reason", _("排除预警必须填写理由。"))
        return data


@scoped
def alert_list(request: HttpRequest) -> HttpResponse:
    """``/alerts/``: the alerts in the person's scope, filtered, counted per status and paginated."""
    form = AlertFilterForm(request.GET or None, principal=request.user)
    filters = form.to_filters()
    page = _page(request, selectors.alert_list(principal=request.user, filters=filters))
    counts = selectors.alert_status_counts(principal=request.user, filters=filters)
    tabs = [{"key": None, "label": _("全部"), "count": counts["all"], "active": not filters.status}]
    tabs += [{"key": value, "label": str(label), "count": counts[value], "active": filters.status == value}
             for value, label in Alert.Status.choices]
    context = {"form": form, "page": page, "rows": selectors.alert_rows(page.object_list), "tabs": tabs}
    template = "monitoring/_alert_results.html" if _is_partial(request) else "monitoring/alert_list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


@scoped
@require_http_methods(["GET", "POST"])
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """``/alerts/<id>/``: the alert, its evidence and telemetry chart, the decision form and the history."""
    alert = selectors.alert_get(principal=request.user, pk=pk)
    may_decide = selectors.may_decide(principal=request.user, alert_id=alert.pk)
    form = AlertDecisionForm(request.POST if request.method == "POST" else None, alert=alert)
    if request.method == "POST":
        if not may_decide:
            raise PermissionDenied(_("您无权处理该预警"))
        if not selectors.next_statuses(alert):
            messages.warning(request, _("该预警已处理完毕，不能再次处理。"))
            return redirect("monitoring:alert_detail", pk=alert.pk)
        if form.is_valid():
            try:
                updated = alert_decide(actor=request.user, alert_id=alert.pk, status=form.cleaned_data["status"],
                                       reason=form.cleaned_data["reason"])
            except (NotFound, PermissionDenied):
                raise  # 404 / 403 through @scoped
            except JiliangError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, _("预警 #%(id)s 已更新为“%(status)s”") % {
                    "id": updated.pk, "status": updated.get_status_display()})
                return redirect("monitoring:alert_detail", pk=alert.pk)
    telemetry = selectors.alert_telemetry(principal=request.user, pk=alert.pk)
    return render(request, "monitoring/alert_detail.html", {
        "alert": alert,
        "row": selectors.alert_rows([alert])[0],
        "evidence": selectors.alert_evidence(alert),
        "telemetry": telemetry,
        "chart": telemetry.chart,
        "may_decide": may_decide and bool(selectors.next_statuses(alert)),
        "form": form,
        "history": selectors.alert_history(alert),
        "type_name": localized_name(alert.device.instrument_type.name_zh, alert.device.instrument_type.name_en),
        **selectors.alert_task(principal=request.user, alert=alert),
    })


@scoped
@require_POST
def alert_task_open(request: HttpRequest, pk: int) -> HttpResponse:
    """``POST /alerts/<id>/task/``: a regulator opens the inspection task of a confirmed alert (预警核查)."""
    from jiliang.supervision.services import alert_task_open as open_task

    alert = selectors.alert_get(principal=request.user, pk=pk)
    try:
        task = open_task(actor=request.user, alert_id=alert.pk)
    except (NotFound, PermissionDenied):
        raise
    except JiliangError as exc:
        messages.error(request, exc.message)
        return redirect("monitoring:alert_detail", pk=alert.pk)
    messages.success(request, _("已开立预警核查任务 #%(id)s") % {"id": task.pk})
    return redirect("supervision:task_detail", pk=task.pk)
