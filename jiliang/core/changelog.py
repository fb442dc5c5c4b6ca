"""Writing the change log.  Services call these inside their transaction."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from typing import Any

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


def history_for(obj: models.Model, limit: int = 50) -> Sequence[ChangeLog]:
    return list(
        ChangeLog.objects.filter(app_label=obj._meta.app_label, model=obj._meta.model_name, object_id=str(obj.pk))
        .order_by("-id")[:limit]
    )
