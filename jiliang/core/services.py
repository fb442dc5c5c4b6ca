"""Writes of the core app: the scheduled jobs' leases (定时任务租约).

Several ``jiliang worker`` processes may run at once (MQTT ingestion on one machine, stream consumers on
others, ADR 0013); the scheduled jobs must still run once per period.  :func:`job_claim` is one
conditional ``UPDATE`` — atomic on PostgreSQL (the row is locked and the condition re-checked) and on
SQLite (one writer at a time) — so of the workers that try, one wins; the others skip the period.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Literal

from django.db.models import Q
from django.utils import timezone

from jiliang.core.models import JobLease

log = logging.getLogger(__name__)


def job_claim(*, name: str, period: str, holder: str, lease_s: float) -> Literal["run", "done", "busy"]:
    """Claim ``name`` for ``period`` (e.g. the day "2026-11-23"; periods must sort as strings in time order,
    as ISO dates and times do): ``"run"`` when this caller is to run it — no period up to this one has been
    finished (a late worker does not rerun yesterday) and nobody holds an unexpired lease on the job; the
    lease lasts ``lease_s`` seconds, after which another worker may take it over (the holder died).
    Otherwise ``"done"`` (this period or a later one is finished) or ``"busy"`` (another worker holds it)."""
    if not name or not period or not holder or lease_s <= 0:
        raise ValueError("job_claim needs a name, a period, a holder and a positive lease")
    JobLease.objects.get_or_create(name=name)  # a concurrent create: Django re-reads the row (savepoint)
    now = timezone.now()
    won = (JobLease.objects.filter(name=name, done_period__lt=period)
           .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
           .update(period=period, holder=holder, lease_until=now + dt.timedelta(seconds=lease_s)))
    if won:
        log.info("job %s %s claimed by %s", name, period, holder)
        return "run"
    return "done" if JobLease.objects.filter(name=name, done_period__gte=period).exists() else "busy"


def job_done(*, name: str, period: str, holder: str) -> bool:
    """Mark the claimed period finished (False: the lease was lost — it expired and another worker took
    the job over, which then finishes it)."""
    now = timezone.now()
    return bool(JobLease.objects.filter(name=name, period=period, holder=holder)
                .update(done_period=period, lease_until=None, finished_at=now))


def job_release(*, name: str, period: str, holder: str) -> None:
    """Give a claimed period up unfinished (the job failed): another worker, or this one, may retry it at
    once."""
    JobLease.objects.filter(name=name, period=period, holder=holder).update(lease_until=None)
