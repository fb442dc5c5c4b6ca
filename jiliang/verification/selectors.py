"""Reads of verification records, always scoped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from jiliang.core.errors import NotFound
from jiliang.engine.validity import due_state
from jiliang.registry.models import Instrument
from jiliang.verification.models import Verification


def verification_list(*, principal: Any, instrument_id: int | None = None, device_id: str = "", kind: str = "",
                      conforming: bool | None = None) -> QuerySet[Verification]:
    qs = Verification.objects.restrict(principal, "view").select_related("instrument", "institution")
    if instrument_id is not None:
        qs = qs.filter(instrument_id=instrument_id)
    if device_id:
        qs = qs.filter(instrument__device_id=device_id)
    if kind:
        qs = qs.filter(kind=kind)
    if conforming is not None:
        qs = qs.filter(conforming=conforming)
    return qs.order_by("-date", "-id")


def verification_get(*, principal: Any, pk: int) -> Verification:
    try:
        return verification_list(principal=principal).get(pk=pk)
    except Verification.DoesNotExist:
        raise NotFound(f"verification {pk} not found") from None


def due_instruments(*, principal: Any, within_days: int | None = None, overdue: bool = False) -> QuerySet[Instrument]:
    """Instruments in service whose validity ends within ``within_days`` (or has ended, with ``overdue``)."""
    today = timezone.localdate()
    days = settings.JILIANG_DUE_SOON_DAYS if within_days is None else within_days
    qs = Instrument.objects.restrict(principal, "view").filter(status__in=["installed", "in_service"])
    if overdue:
        return qs.filter(valid_until__lt=today).order_by("valid_until")
    return qs.filter(valid_until__gte=today, valid_until__lte=today + dt.timedelta(days=days)).order_by("valid_until")


@dataclass(frozen=True)
class PublicVerification:
    """What the public may see of an instrument's latest verification (no names, no raw points)."""

    date: dt.date | None
    conforming: bool | None
    valid_until: dt.date | None
    state: str  # none | valid | due_soon | overdue
    institution: str


def public_latest_verification(instrument: Instrument) -> PublicVerification:
    """From the instrument's own latest-verification fields (kept by the verification services), so the
    date, the result and the validity always belong to the same verification."""
    state = due_state(instrument.valid_until, timezone.localdate(), settings.JILIANG_DUE_SOON_DAYS)
    if instrument.last_verified_on is None:
        return PublicVerification(None, None, None, state, "")
    latest = (Verification.objects.filter(instrument=instrument, date=instrument.last_verified_on)
              .select_related("institution").order_by("-id").first())
    return PublicVerification(instrument.last_verified_on, instrument.last_verification_conforming,
                              instrument.valid_until, state, latest.institution.name if latest else "")
