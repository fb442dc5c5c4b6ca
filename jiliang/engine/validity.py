"""Validity of a verification (检定有效期) and due dates, by the type's verification mode.

- periodic (周期检定): a passing verification is valid for the type's period; the next is due then.
- first verification only, limited life (只做首次强制检定，限期使用，到期轮换): the service life counts from
  the first passing verification; at its end the instrument is replaced (JJG 162-2019 §7.5 for water).
- a failing verification has no validity (the result notice has no 有效期至 field).

>>> import datetime as dt
>>> valid_until(mode="periodic", period_months=12, service_life_years=None,
...             verified_on=dt.date(2024, 2, 29), conforming=True)
datetime.date(2025, 2, 28)
>>> valid_until(mode="first_only_limited_life_rotate", period_months=None, service_life_years=6,
...             verified_on=dt.date(2024, 5, 1), conforming=True, first_verified_on=dt.date(2020, 3, 1))
datetime.date(2026, 2, 28)
"""

from __future__ import annotations

import calendar
import datetime as dt


def add_months(d: dt.date, months: int) -> dt.date:
    """Calendar months, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return dt.date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _last_covered_day(start: dt.date, months: int) -> dt.date:
    """The day before the anniversary; an anniversary that falls on a missing day (29 Feb, 31 Apr) is the
    next day, so the whole period is covered."""
    anniversary = add_months(start, months)
    if anniversary.day < start.day:
        anniversary += dt.timedelta(days=1)
    return anniversary - dt.timedelta(days=1)


def valid_until(*, mode: str, period_months: int | None, service_life_years: int | None, verified_on: dt.date,
                conforming: bool, first_verified_on: dt.date | None = None) -> dt.date | None:
    """The last day the verification covers, or None when it does not make the instrument valid."""
    if not conforming:
        return None
    if mode == "periodic":
        if not period_months:
            raise ValueError("a periodic type needs a period")
        return _last_covered_day(verified_on, period_months)
    if service_life_years:
        start = first_verified_on or verified_on
        return _last_covered_day(start, 12 * service_life_years)
    return None


def due_state(valid_to: dt.date | None, today: dt.date, soon_days: int) -> str:
    """``none`` (no valid verification), ``overdue``, ``due_soon`` or ``valid``."""
    if valid_to is None:
        return "none"
    if valid_to < today:
        return "overdue"
    if (valid_to - today).days <= soon_days:
        return "due_soon"
    return "valid"
