"""Telemetry upload (``POST /api/v1/telemetry``): NDJSON body, the sending organisation's API token."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from jiliang.accounts.roles import Scope
from jiliang.core.api import ERRORS, principal
from jiliang.core.errors import JiliangError, PermissionDenied
from jiliang.monitoring.ingest import ingest_lines

router = Router(tags=["monitoring"])
MAX_BODY = 50 * 1024 * 1024


class RejectionOut(Schema):
    line: int
    field: str | None
    reason: str


class IngestOut(Schema):
    lines: int
    accepted: int
    duplicates: int
    rejected: int
    by_kind: dict[str, int]
    rejections: list[RejectionOut]


@router.post("/telemetry", response={200: IngestOut, **ERRORS},
             summary="Upload telemetry (NDJSON, SPEC 3.2); only the sender's own devices and places are accepted",
             openapi_extra={"requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}})
def upload_telemetry(request: HttpRequest) -> Any:
    scope = Scope.of(principal(request))
    if scope.org_id is None and not scope.is_admin:
        raise PermissionDenied("telemetry is sent with an organization's token")
    body = request.body
    if len(body) > MAX_BODY:
        raise JiliangError(f"the body is larger than {MAX_BODY // (1024 * 1024)} MiB; send it in batches",
                           code="too_large", status=413)
    report = ingest_lines(body.splitlines(), source=f"api:{getattr(principal(request), 'username', '?')}"[:100],
                          sender_org=None if scope.is_admin else scope.org_id)
    return report.as_dict()
