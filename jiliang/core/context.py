"""Per-request (or per-command) context: the request id that ties change-log rows to one request."""

from __future__ import annotations

import contextvars
import uuid

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("jiliang_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def set_request_id(value: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def current_request_id() -> str:
    """The current request's id, or a fresh one per call outside a request (e.g. a script)."""
    rid = _request_id.get()
    if rid is None:
        rid = "proc-" + new_request_id()
        _request_id.set(rid)
    return rid
