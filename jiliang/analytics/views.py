"""The dashboard (概览): what the signed-in person's scope holds, as figures and charts."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jiliang.analytics.selectors import dashboard_summary
from jiliang.portal.templatetags.jiliang_ui import is_english


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """``/``: instrument counts by type, status and district, and the instruments due for rotation."""
    from jiliang.accounts.roles import Scope
    from jiliang.monitoring.models import Alert
    from jiliang.monitoring.policy import alert_q

    summary = dashboard_summary(principal=request.user, english=is_english())
    scope = Scope.of(request.user)
    handles_alerts = scope.is_admin or alert_q(scope, "view") is not None
    open_alerts = (Alert.objects.restrict(request.user, "view").filter(status__in=Alert.OPEN).count()
                   if handles_alerts else None)
    return render(request, "analytics/dashboard.html", {"summary": summary, "chart_data": summary.chart_data(),
                                                        "open_alerts": open_alerts})
