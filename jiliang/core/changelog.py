"""Writing the change log.  Services call these inside their transaction."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from django.db import models
from django.utils import timezone

from jiliang.core.context import current_request_id
from jiliang.core.models import ChangeLog

# Fields never copied into the log (secrets); personal data is masked by the model's own snapshot.
_NEVER_LOGGED = {"password", "token_hash", "qr_token", "secret_hex"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value


def snapshot(obj: models.Model) -> dict[str, Any]:
    """The concrete field values of a row, foreign keys by id, secrets left out."""
    data: dict[str, Any] = {}
    for f in obj._meta.concrete_fields:
        if f.name in _NEVER_LOGGED:
            continue
        data[f.attname] = _jsonable(getattr(obj, f.attname))
    extra = getattr(obj, "changelog_extra", None)
    if callable(extra):
        data.update(extra())
    return data


def actor_fields(actor: Any) -> tuple[int | None, str]:
    if actor is None:
        return None, "system"
    return getattr(actor, "pk", None), str(getattr(actor, "username", actor))[:150]


def _row(obj: models.Model, action: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
         actor: Any, at: dt.datetime, request_id: str) -> ChangeLog:
    actor_id, actor_label = actor_fields(actor)
    return ChangeLog(
        at=at, action=action, app_label=obj._meta.app_label, model=obj._meta.model_name or "",
        object_id=str(obj.pk), object_repr=str(obj)[:200], actor_id=actor_id, actor_label=actor_label,
        request_id=request_id, before=before, after=after,
    )


def log_change(*, actor: Any, obj: models.Model, action: str, before: dict[str, Any] | None = None) -> ChangeLog:
    """Append one entry; ``before`` is the snapshot taken before the change (None for a creation)."""
    after = None if action == ChangeLog.Action.DELETE else snapshot(obj)
    row = _row(obj, action, before, after, actor, timezone.now(), current_request_id())
    row.save()
    return row


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}


IMPORT_BLOCK = 10_000


def _ranges(ids: Sequence[int]) -> list[list[int]]:
    """Ascending ids as [[first, count], ...] runs of consecutive values."""
    out: list[list[int]] = []
    for i in ids:
        if out and out[-1][0] + out[-1][1] == i:
            out[-1][1] += 1
        else:
            out.append([i, 1])
    return out


def import_entries(*, model: type[models.Model], ids: Sequence[int], columns: Sequence[str],
                   rows: Sequence[Sequence[Any]], actor: Any, at: dt.datetime | None = None) -> list[list[Any]]:
    """Change-log rows (``IMPORT_COLUMNS`` order) recording a bulk creation: one ``import`` entry per
    ``IMPORT_BLOCK`` rows, ``payload`` holding every created row's values as JSON text.  ``ids`` ascending,
    ``rows[i]`` the values of ``ids[i]`` in ``columns`` order (secrets left out by the caller; dates and
    datetimes are written as ISO text)."""
    if len(ids) != len(rows):
        raise ValueError("one row of values per id")
    at = at or timezone.now()
    rid = current_request_id()
    actor_id, actor_label = actor_fields(actor)
    meta = model._meta
    label = str(meta.verbose_name_plural)
    out: list[list[Any]] = []
    for start in range(0, len(ids), IMPORT_BLOCK):
        block_ids = ids[start: start + IMPORT_BLOCK]
        after = {"columns": list(columns), "ranges": _ranges(block_ids), "count": len(block_ids)}
        payload = orjson.dumps(list(rows[start: start + IMPORT_BLOCK])).decode()
        out.append([at, ChangeLog.Action.IMPORT.value, meta.app_label, meta.model_name or "",
                    f"{block_ids[0]}-{block_ids[-1]}", f"{len(block_ids)} {label}"[:200], actor_id, actor_label, rid,
                    None, after, payload])
    return out


IMPORT_COLUMNS = ("at", "action", "app_label", "model", "object_id", "object_repr", "actor_id", "actor_label",
                  "request_id", "before", "after", "payload")


def _import_entry_for(obj: models.Model) -> ChangeLog | None:
    """The ``import`` entry that created ``obj``, with ``after`` narrowed to that row's values."""
    pk = obj.pk
    if not isinstance(pk, int):
        return None
    base = ChangeLog.objects.filter(app_label=obj._meta.app_label, model=obj._meta.model_name,
                                    action=ChangeLog.Action.IMPORT)
    for entry_id, span in base.values_list("id", "object_id"):
        first, _, last = span.partition("-")
        if not (first.isdigit() and last.isdigit() and int(first) <= pk <= int(last)):
            continue
        ranges = ChangeLog.objects.filter(pk=entry_id).values_list("after__ranges", flat=True).first() or []
        position = 0
        for start, count in ranges:
            if start <= pk < start + count:
                position += pk - start
                break
            position += count
        else:
            continue
        entry = ChangeLog.objects.get(pk=entry_id)
        rows = orjson.loads(entry.payload or "[]")
        if position >= len(rows):
            return None
        entry.after = dict(zip((entry.after or {}).get("columns", []), rows[position], strict=False))
        entry.payload = ""
        return entry
    return None


def history_for(obj: models.Model, limit: int = 50) -> Sequence[ChangeLog]:
    """The object's change-log entries, newest first, including the bulk import that created it."""
    entries = list(
        ChangeLog.objects.filter(app_label=obj._meta.app_label, model=obj._meta.model_name, object_id=str(obj.pk))
        .order_by("-id")[:limit]
    )
    if len(entries) < limit and not any(e.action == ChangeLog.Action.CREATE for e in entries):
        created = _import_entry_for(obj)
        if created is not None:
            entries.append(created)
            entries.sort(key=lambda e: e.pk, reverse=True)
    return entries
