"""Reads for the dashboard, always through the restricted querysets of the registry."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from jiliang.registry.choices import InstrumentStatus
from jiliang.registry.models import Instrument
from jiliang.registry.selectors import dashboard_counts, instrument_type_list, region_list


def add_years(day: dt.date, years: int) -> dt.date:
    """``day`` plus whole years; 29 February becomes 1 March in a common year (a service life that
    started on a leap day ends the day after 28 February).

    >>> add_years(dt.date(2020, 2, 29), 6), add_years(dt.date(2020, 3, 1), 6)
    (datetime.date(2026, 3, 1), datetime.date(2026, 3, 1))
    """
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def latest_start(limit: dt.date, years: int) -> dt.date:
    """The latest install date whose service life of ``years`` ends on or before ``limit``:
    ``add_years(d, years) <= limit`` exactly when ``d <= latest_start(limit, years)``.

    >>> latest_start(dt.date(2026, 2, 28), 6), latest_start(dt.date(2028, 2, 29), 6)
    (datetime.date(2020, 2, 28), datetime.date(2022, 2, 28))
    """
    try:
        return limit.replace(year=limit.year - years)
    except ValueError:
        return dt.date(limit.year - years, 2, 28)


@dataclass(frozen=True)
class DueSoon:
    """Instruments whose validity ends within ``horizon_days`` days or has already ended; ``overdue`` is
    the part that has ended.  The validity is the recorded one (``Instrument.valid_until``, set by the
    verification services for every type); for a limited-life type with no verification on record, the
    install date plus the service life stands in."""

    total: int
    overdue: int
    horizon_days: int
    by_type: dict[str, int] = field(default_factory=dict)
    limited_life_types: frozenset[str] = frozenset()

    def for_type(self, key: str) -> int | None:
        """The count for one type, or None when the type has no limited service life."""
        return self.by_type.get(key, 0) if key in self.limited_life_types else None


def due_soon(*, principal: Any, today: dt.date | None = None, horizon_days: int | None = None) -> DueSoon:
    """Count instruments due for verification or rotation; retired instruments never count (they are
    already out of service)."""
    today = today or timezone.localdate()
    days = settings.JILIANG_DUE_SOON_DAYS if horizon_days is None else horizon_days
    types = list(instrument_type_list())
    lives = {t.key: t.service_life_years for t in types if t.service_life_years}
    horizon = today + dt.timedelta(days=days)
    yesterday = today - dt.timedelta(days=1)
    life_due = Q(pk__in=[])
    life_over = Q(pk__in=[])
    for key, years in lives.items():
        life_due |= Q(instrument_type_id=key, install_date__lte=latest_start(horizon, years))
        life_over |= Q(instrument_type_id=key, install_date__lte=latest_start(yesterday, years))
    recorded = Q(valid_until__isnull=False)
    due_q = (recorded & Q(valid_until__lte=horizon)) | (Q(valid_until__isnull=True) & life_due)
    over_q = (recorded & Q(valid_until__lt=today)) | (Q(valid_until__isnull=True) & life_over)
    limited = frozenset(t.key for t in types)
    rows = (Instrument.objects.restrict(principal, "view")
            .exclude(status=InstrumentStatus.RETIRED)
            .filter(due_q)
            .values("instrument_type_id")
            .annotate(n=Count("id"), over=Count("id", filter=over_q))
            .order_by("instrument_type_id"))
    by_type = {r["instrument_type_id"]: r["n"] for r in rows}
    return DueSoon(total=sum(by_type.values()), overdue=sum(r["over"] for r in rows), horizon_days=days,
                   by_type=by_type, limited_life_types=limited)


@dataclass(frozen=True)
class Bar:
    """One labelled count of a chart."""

    key: str
    label: str
    value: int


@dataclass(frozen=True)
class TypeRow:
    """One line of the per-type table: the count and, for limited-life types, how many are due."""

    key: str
    label: str
    value: int
    due: int | None


@dataclass(frozen=True)
class DashboardSummary:
    """Everything the dashboard shows, with labels in the active language."""

    total: int
    by_type: list[Bar]
    by_status: list[Bar]
    by_district: list[Bar]
    due: DueSoon

    def type_rows(self) -> list[TypeRow]:
        return [TypeRow(b.key, b.label, b.value, self.due.for_type(b.key)) for b in self.by_type]

    def chart_data(self) -> dict[str, list[dict[str, Any]]]:
        """Plain data for the ECharts script (embedded with ``json_script``)."""
        def rows(bars: list[Bar]) -> list[dict[str, Any]]:
            return [{"key": b.key, "label": b.label, "value": b.value} for b in bars]

        return {"by_type": rows(self.by_type), "by_status": rows(self.by_status), "by_district": rows(self.by_district)}


def dashboard_summary(*, principal: Any, english: bool = False, today: dt.date | None = None) -> DashboardSummary:
    """Counts by type, status and district plus the due-soon figure, for the person's scope."""
    counts = dashboard_counts(principal=principal)
    type_names = {t.key: (t.name_en if english and t.name_en else t.name_zh) for t in instrument_type_list()}
    status_labels = dict(InstrumentStatus.choices)
    region_codes = [r["region_id"] for r in counts["by_region"]]
    region_en = dict(region_list().filter(code__in=region_codes).values_list("code", "name_en")) if english else {}
    by_type = [Bar(r["instrument_type_id"], type_names.get(r["instrument_type_id"], r["instrument_type__name_zh"]),
                   r["n"]) for r in counts["by_type"]]
    order = {s: i for i, s in enumerate(InstrumentStatus.values)}
    by_status = [Bar(r["status"], str(status_labels.get(r["status"], r["status"])), r["n"])
                 for r in sorted(counts["by_status"], key=lambda r: order.get(r["status"], 99))]
    by_district = [Bar(r["region_id"], region_en.get(r["region_id"]) or r["region__name"], r["n"])
                   for r in counts["by_region"]]
    return DashboardSummary(total=counts["total"], by_type=by_type, by_status=by_status, by_district=by_district,
                            due=due_soon(principal=principal, today=today))
