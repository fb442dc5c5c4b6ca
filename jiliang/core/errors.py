"""The one error type raised by services, and the row-level problems of a bulk operation.

The API turns :class:`JiliangError` into the documented error envelope (docs/api.md)::

    {"error": {"code": "validation_failed", "message": "...",
               "details": [{"row": 3, "field": "uscc", "reason": "..."}]}}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one record: which record (row number, 1-based after the header), field, why."""

    row: int | None
    field: str | None
    reason: str
    value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field:
            where.append(f"field {self.field}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


@dataclass
class JiliangError(Exception):
    """A refused operation.  ``code`` is stable (clients match on it); ``message`` is for people."""

    message: str
    code: str = "invalid"
    status: int = 400
    details: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def as_envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message,
                          "details": [p.as_dict() for p in self.details]}}


class NotFound(JiliangError):
    def __init__(self, message: str = "not found") -> None:
        super().__init__(message=message, code="not_found", status=404)


class PermissionDenied(JiliangError):
    def __init__(self, message: str = "permission denied") -> None:
        super().__init__(message=message, code="permission_denied", status=403)
