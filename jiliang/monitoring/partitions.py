"""Monthly partitions of the telemetry tables on PostgreSQL (按月分区) and raw-record retention (原始数据保留期).

On PostgreSQL every telemetry table is partitioned by month of its time column (migration 0003, ADR 0010);
a month's partition is created when the first record of that month is stored.  SQLite keeps plain tables.
``prune`` removes raw records older than a date, except the evidence (证据) of alerts still being followed
up: an alert that is new or triaged, or confirmed while its follow-up is unfinished (no inspection task
yet, the task not completed, or one of its cases not closed).  An alert's evidence names its device's
records (by ``seq``, or by example values), so all of that device's records -- and, for tank records,
those of the place where it stands -- are kept.  On PostgreSQL a month wholly before the date with nothing
to keep is dropped as a partition; otherwise rows are deleted.  ``prune_expired`` applies the configured
retention (``JILIANG_TELEMETRY_RETENTION_DAYS``); the worker runs it nightly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connection, models, transaction

TELEMETRY_TIME_COLUMNS: dict[str, str] = {
    # db table: the time column it is partitioned by
    "monitoring_scaletxn": "ts", "monitoring_scaleevent": "ts", "monitoring_scalerecheck": "ts",
    "monitoring_chargersession": "start_ts", "monitoring_dispensersale": "ts", "monitoring_tankreading": "ts",
    "monitoring_tankdelivery": "ts", "monitoring_meterreading": "ts",
}


def is_partitioned(model: type[models.Model]) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [model._meta.db_table])
        return cur.fetchone() is not None


def _months(times: Any) -> set[tuple[int, int]]:
    """(year, month) in UTC of datetimes, or of µs since the epoch (a NumPy array)."""
    if isinstance(times, np.ndarray):
        if not times.size:
            return set()
        months = np.unique(times.astype("datetime64[us]").astype("datetime64[M]")).astype(np.int64)
        return {(1970 + int(m) // 12, int(m) % 12 + 1) for m in months}
    out = set()
    for t in times:
        u = t.astimezone(dt.UTC)
        out.add((u.year, u.month))
    return out


def partition_name(table: str, year: int, month: int) -> str:
    return f"{table}_p{year:04d}{month:02d}"


def _existing(table: str) -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = to_regclass(%s)", [table])
        return {r[0] for r in cur.fetchall()}


def create_partition(table: str, year: int, month: int) -> str:
    name = partition_name(table, year, month)
    nxt = (year + month // 12, month % 12 + 1)
    with connection.cursor() as cur:
        cur.execute(f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                    f"FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00:00+00') "
                    f"TO ('{nxt[0]:04d}-{nxt[1]:02d}-01 00:00:00+00')")
    return name


def ensure_partitions(model: type[models.Model], times: Any) -> None:
    """Create the monthly partitions that rows with these times need (PostgreSQL, partitioned tables)."""
    table = model._meta.db_table
    if connection.vendor != "postgresql" or table not in TELEMETRY_TIME_COLUMNS:
        return
    months = _months(times)
    if not months:
        return
    have = _existing(table)
    if not have and not is_partitioned(model):
        return
    for y, m in sorted(months):
        if partition_name(table, y, m) not in have:
            create_partition(table, y, m)


@dataclass
class PruneReport:
    before: dt.datetime
    deleted: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)          # rows kept as evidence of alerts followed up
    dropped_partitions: list[str] = field(default_factory=list)


def _protected() -> tuple[list[int], list[int]]:
    """Instruments with an alert under follow-up (open, or confirmed with its inspection task or cases not
    finished), and the places where they stand."""
    from django.db.models import Exists, OuterRef, Q

    from jiliang.monitoring.models import Alert
    from jiliang.registry.models import Instrument
    from jiliang.supervision.models import Case, InspectionTask

    unfinished_case = Case.objects.filter(task=OuterRef("pk")).exclude(status=Case.Status.CLOSED)
    settled = InspectionTask.objects.filter(alert=OuterRef("pk"), status=InspectionTask.Status.COMPLETED).exclude(
        Exists(unfinished_case))
    following = Alert.objects.filter(Q(status__in=Alert.OPEN) | (Q(status="confirmed") & ~Exists(settled)))
    devices = sorted(set(following.values_list("device_id", flat=True)))
    places = sorted({p for p in Instrument.objects.filter(pk__in=devices).values_list("place_id", flat=True)
                     if p is not None})
    return devices, places


def _in_list(column: str, values: Iterable[int]) -> str:
    vals = [int(v) for v in values]
    return f'"{column}" IN ({", ".join(str(v) for v in vals)})' if vals else "FALSE"


@transaction.atomic
def prune(*, before: dt.datetime, dry_run: bool = False) -> PruneReport:
    """Remove telemetry records older than ``before`` except the evidence of open alerts."""
    from jiliang.monitoring.ingest import TABLES

    report = PruneReport(before)
    devices, places = _protected()
    for model, cols, _key in TABLES.values():
        table = model._meta.db_table
        tcol = TELEMETRY_TIME_COLUMNS[table]
        ref = "device_id" if "device_id" in cols else "place_id"
        keep = _in_list(ref, devices if ref == "device_id" else places)
        pg = connection.vendor == "postgresql"
        # SQLite holds naive UTC text, as Django writes it
        bound: Any = before if pg else before.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
        kept_sql = f"COUNT(*) FILTER (WHERE {keep})" if pg else f"COALESCE(SUM({keep}), 0)"
        with connection.cursor() as cur:
            cur.execute(f'SELECT {kept_sql}, COUNT(*) FROM "{table}" WHERE "{tcol}" < %s', [bound])  # noqa: S608
            kept, old = cur.fetchone()
            report.kept[table] = int(kept)
            report.deleted[table] = int(old) - int(kept)
            if dry_run or old == 0:
                continue
            if pg and is_partitioned(model):
                for name in sorted(_existing(table)):
                    y, m = int(name[-6:-2]), int(name[-2:])
                    end = dt.datetime(y + m // 12, m % 12 + 1, 1, tzinfo=dt.UTC)
                    if end > before:
                        continue
                    cur.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}" WHERE {keep})')  # noqa: S608
                    if not cur.fetchone()[0]:
                        cur.execute(f'DROP TABLE "{name}"')
                        report.dropped_partitions.append(name)
            cur.execute(f'DELETE FROM "{table}" WHERE "{tcol}" < %s AND NOT ({keep})', [bound])  # noqa: S608
    if not dry_run:
        _prune_segments(before)
    return report


def _prune_segments(before: dt.datetime) -> None:
    """Drop the column segments (ADR 0012) whose rows are all older than ``before``, raising each kind's
    mark past them: a record kept as evidence is then read as a row, never lost."""
    from django.db.models import Max

    from jiliang.monitoring.models import SegmentMark, TelemetrySegment

    old = TelemetrySegment.objects.filter(max_ts__lt=before)
    for kind, top in old.values("kind").annotate(top=Max("last_id")).values_list("kind", "top"):
        SegmentMark.objects.filter(kind=kind, covered_after__lt=top).update(covered_after=top)
    old.delete()


def retention_cutoff(now: dt.datetime | None = None) -> dt.datetime | None:
    """Records older than this are past the configured retention (``JILIANG_TELEMETRY_RETENTION_DAYS``,
    counted in whole days back from today's midnight, Asia/Shanghai); None when retention is off (0)."""
    import zoneinfo

    from django.conf import settings
    from django.utils import timezone

    days = int(getattr(settings, "JILIANG_TELEMETRY_RETENTION_DAYS", 0))
    if days <= 0:
        return None
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    today = (now or timezone.now()).astimezone(tz).date()
    return dt.datetime.combine(today - dt.timedelta(days=days), dt.time(0), tzinfo=tz)


def prune_expired(*, now: dt.datetime | None = None, dry_run: bool = False) -> PruneReport | None:
    """``prune`` at the configured retention (the worker's nightly step); None when retention is off."""
    cutoff = retention_cutoff(now)
    return None if cutoff is None else prune(before=cutoff, dry_run=dry_run)
