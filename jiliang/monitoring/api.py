"""Telemetry upload (``POST /api/v1/telemetry``): NDJSON body, the sending organisation's API token."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from jiliang.accounts.roles import Scope
from jiliang.core.api import ERRORS, Page, paginate, principal
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


class AlertOut(Schema):
    id: int
    device: str
    detector: str
    severity: str
    status: str
    opened_at: dt.datetime
    updated_at: dt.datetime
    occurrences: int
    region_code: str
    evidence: dict[str, Any]
    decision_reason: str

    @staticmethod
    def resolve_device(obj: Any) -> str:
        return str(obj.device.device_id)

    @staticmethod
    def resolve_region_code(obj: Any) -> str:
        return str(obj.region_id)


class AlertDecision(Schema):
    status: str
    reason: str = ""


@router.get("/alerts", response={200: Page[AlertOut], **ERRORS})
def list_alerts(request: HttpRequest, status: str = "", detector: str = "", limit: int | None = None,
                offset: int | None = None) -> Any:
    from jiliang.monitoring.models import Alert

    qs = Alert.objects.restrict(principal(request), "view").select_related("device").order_by("-opened_at", "-id")
    if status:
        qs = qs.filter(status=status)
    if detector:
        qs = qs.filter(detector=detector)
    return paginate(qs, limit, offset)


@router.get("/alerts/{alert_id}", response={200: AlertOut, **ERRORS})
def get_alert(request: HttpRequest, alert_id: int) -> Any:
    from jiliang.core.errors import NotFound
    from jiliang.monitoring.models import Alert

    a = Alert.objects.restrict(principal(request), "view").select_related("device").filter(pk=alert_id).first()
    if a is None:
        raise NotFound(f"alert {alert_id} not found")
    return a


@router.patch("/alerts/{alert_id}", response={200: AlertOut, **ERRORS},
              summary="Triage, confirm or dismiss (with a reason) an alert")
def decide_alert(request: HttpRequest, alert_id: int, payload: AlertDecision) -> Any:
    from jiliang.monitoring.detection import alert_decide

    return alert_decide(actor=principal(request), alert_id=alert_id, status=payload.status, reason=payload.reason)
