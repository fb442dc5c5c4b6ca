"""Verification API (``/api/v1/verifications``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status

from jiliang.core.api import ERRORS, Page, paginate, principal
from jiliang.verification import selectors, services

router = Router(tags=["verification"])


class PointResultOut(Schema):
    point: str
    mpe: float
    verdict: str
    margin: float


class VerificationOut(Schema):
    id: int
    instrument_id: int
    device_id: str
    kind: str
    stage: str
    date: dt.date
    institution_id: int
    verifier: str
    certificate_no: str
    points: list[dict[str, Any]]
    results: list[PointResultOut]
    conforming: bool
    valid_until: dt.date | None

    @staticmethod
    def resolve_device_id(obj: Any) -> str:
        return str(obj.instrument.device_id)


class VerificationIn(Schema):
    device_id: str
    kind: str
    date: str
    institution_uscc: str
    points: list[dict[str, Any]]
    stage: str = "initial"
    certificate_no: str = ""
    verifier: str = ""


@router.get("/verifications", response={200: Page[VerificationOut], **ERRORS})
def list_verifications(request: HttpRequest, device_id: str = "", instrument_id: int | None = None, kind: str = "",
                       conforming: bool | None = None, limit: int | None = None, offset: int | None = None) -> Any:
    qs = selectors.verification_list(principal=principal(request), device_id=device_id, instrument_id=instrument_id,
                                     kind=kind, conforming=conforming)
    return paginate(qs, limit, offset)


@router.get("/verifications/{verification_id}", response={200: VerificationOut, **ERRORS})
def get_verification(request: HttpRequest, verification_id: int) -> Any:
    return selectors.verification_get(principal=principal(request), pk=verification_id)


@router.post("/verifications", response={201: VerificationOut, **ERRORS},
             summary="Record a verification; its points are judged by the MPE engine (SPEC 3.3)")
def create_verification(request: HttpRequest, payload: VerificationIn) -> Any:
    return Status(201, services.verification_record(actor=principal(request), **payload.dict()))
