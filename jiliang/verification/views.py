"""Pages for verification follow-up: the due list (到期清单)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jiliang.verification.selectors import due_instruments


@login_required
def due_list(request: HttpRequest) -> HttpResponse:
    """``/verifications/due/``: instruments in service whose verification falls due soon, or is overdue
    (``?overdue=1``), within the person's scope, soonest first."""
    overdue = request.GET.get("overdue") == "1"
    rows = due_instruments(principal=request.user, overdue=overdue).select_related(
        "instrument_type", "owner", "place", "region")
    page = Paginator(rows, settings.JILIANG_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "verification/due_list.html", {
        "page": page, "instruments": page.object_list, "overdue": overdue,
        "days": settings.JILIANG_DUE_SOON_DAYS})
