"""Verification API: ``/api/v1/verifications``, ``/api/v1/certificates`` and the public certificate check
(``/api/v1/public/keys``, ``/api/v1/public/certificates/revoked``, ``/api/v1/public/certificates/verify``:
no sign-in)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, Router, Schema, Status

from jiliang.core.api import ERRORS, ErrorEnvelope, Page, paginate, principal
from jiliang.engine import signing
from jiliang.verification import certificates, selectors, services
from jiliang.verification.models import CertificateKind

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
    standards: str
    temperature_c: float | None
    humidity_pct: float | None
    engine_conforming: bool | None = Field(None, description="the MPE engine's verdict, kept when the "
                                                            "conclusion was corrected (override)")
    override_reason: str

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
    standards: str = ""
    temperature_c: float | None = None
    humidity_pct: float | None = None


class OverrideIn(Schema):
    conforming: bool
    reason: str = Field(..., description="why the engine's conclusion is corrected (at least 10 characters)")


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


# ---------------------------------------------------------------------------------------------- certificates

ERRORS_409: dict[int, type[Schema]] = {**ERRORS, 409: ErrorEnvelope}


@router.post("/verifications/{verification_id}/override", response={200: VerificationOut, **ERRORS_409},
             summary="Correct the engine's conclusion (the performing institution, with a reason; logged)")
def override_verification(request: HttpRequest, verification_id: int, payload: OverrideIn) -> Any:
    v = services.verification_override(actor=principal(request), verification_id=verification_id,
                                       conforming=payload.conforming, reason=payload.reason)
    return selectors.verification_get(principal=principal(request), pk=v.pk)


class NotificationOut(Schema):
    id: int
    title: str
    body: str
    link: str
    created_at: dt.datetime
    read_at: dt.datetime | None


class NotificationReadIn(Schema):
    ids: list[int] | None = Field(None, description="which to mark read; all unread when omitted")


@router.get("/notifications", response={200: Page[NotificationOut], **ERRORS},
            summary="The signed-in person's in-app messages (due-date reminders …)")
def list_notifications(request: HttpRequest, unread: bool = False, limit: int | None = None,
                       offset: int | None = None) -> Any:
    from jiliang.accounts.selectors import notification_list

    return paginate(notification_list(principal=principal(request), unread_only=unread), limit, offset)


@router.post("/notifications/read", response={200: dict[str, int], **ERRORS})
def read_notifications(request: HttpRequest, payload: NotificationReadIn) -> Any:
    from jiliang.accounts.services import notifications_mark_read

    return {"marked": notifications_mark_read(actor=principal(request), ids=payload.ids)}


class CertificateOut(Schema):
    """A certificate (检定证书) or result notice (检定结果通知书) with its signed QR payload."""

    id: int
    number: str
    kind: str
    verification_id: int
    device_id: str
    institution_id: int
    institution_uscc: str
    year: int
    seq: int
    conforming: bool
    valid_until: dt.date | None
    checker: str
    approver: str
    issued_at: dt.datetime
    issued_by: str
    kid: str
    algorithm: str
    payload: str
    revoked_at: dt.datetime | None
    revocation_reason: str
    pdf_url: str

    @staticmethod
    def resolve_device_id(obj: Any) -> str:
        return str(obj.verification.instrument.device_id)

    @staticmethod
    def resolve_institution_uscc(obj: Any) -> str:
        return str(obj.institution.uscc)

    @staticmethod
    def resolve_conforming(obj: Any) -> bool:
        return bool(obj.verification.conforming)

    @staticmethod
    def resolve_valid_until(obj: Any) -> dt.date | None:
        valid: dt.date | None = obj.verification.valid_until
        return valid if obj.kind == CertificateKind.CERTIFICATE else None

    @staticmethod
    def resolve_kid(obj: Any) -> str:
        return str(obj.key.kid)

    @staticmethod
    def resolve_algorithm(obj: Any) -> str:
        return str(obj.key.algorithm)

    @staticmethod
    def resolve_pdf_url(obj: Any) -> str:
        return f"/api/v1/certificates/{obj.pk}/pdf"


class CertificateIssueIn(Schema):
    checker: str = Field("", description="核验员 (checker)", max_length=50)
    approver: str = Field("", description="批准人 (approver); defaults to the person issuing", max_length=50)


class CertificateRevokeIn(Schema):
    reason: str = Field(..., description="撤销原因, logged and kept with the certificate", max_length=300)


class PublicKeyOut(Schema):
    """An institution's published signing key: enough to verify its certificates offline."""

    kid: str
    algorithm: str
    public_key_hex: str
    public_key_pem: str
    status: str
    created_at: dt.datetime
    retired_at: dt.datetime | None
    institution_uscc: str
    institution_name: str

    @staticmethod
    def resolve_public_key_pem(obj: Any) -> str:
        return signing.public_key_pem(obj.algorithm, bytes.fromhex(obj.public_key_hex))

    @staticmethod
    def resolve_institution_uscc(obj: Any) -> str:
        return str(obj.organization.uscc)

    @staticmethod
    def resolve_institution_name(obj: Any) -> str:
        return str(obj.organization.name)


class RevokedOut(Schema):
    number: str
    institution_uscc: str
    revoked_at: dt.datetime

    @staticmethod
    def resolve_institution_uscc(obj: Any) -> str:
        return str(obj.institution.uscc)


class VerifyIn(Schema):
    payload: str = Field(..., description="the QR text (JL1:…) or a link ending in /c/JL1:…", max_length=8192)


class CheckedCertificateOut(Schema):
    number: str
    kind: str
    kind_label: str
    issuer_uscc: str
    issuer_name: str
    device_id: str
    instrument_type: str
    instrument_type_name: str
    serial: str
    accuracy_class: str
    date: str
    valid_until: str | None
    conclusion: str
    expired: bool
    revoked_at: dt.datetime | None
    kid: str
    algorithm: str


class VerifyOut(Schema):
    """``valid`` with a stable ``reason`` (ok, malformed, unsupported_version, unknown_key,
    algorithm_mismatch, bad_signature, issuer_mismatch, unknown_certificate, not_issued, revoked) and,
    once the issuer's signature has verified (so also for a revoked certificate), its key data."""

    valid: bool
    reason: str
    message: str
    detail: str
    certificate: CheckedCertificateOut | None


@router.post("/verifications/{verification_id}/certificate", response={201: CertificateOut, **ERRORS_409},
             summary="Issue the certificate (conforming) or result notice (non-conforming) of a verification")
def issue_certificate(request: HttpRequest, verification_id: int, payload: CertificateIssueIn) -> Any:
    cert = certificates.certificate_issue(actor=principal(request), verification_id=verification_id,
                                          checker=payload.checker, approver=payload.approver)
    return Status(201, certificates.certificate_get(principal=principal(request), pk=cert.pk))


@router.get("/certificates", response={200: Page[CertificateOut], **ERRORS})
def list_certificates(request: HttpRequest, device_id: str = "", kind: str = "", revoked: bool | None = None,
                      institution_id: int | None = None, limit: int | None = None, offset: int | None = None) -> Any:
    qs = certificates.certificate_list(principal=principal(request), device_id=device_id, kind=kind, revoked=revoked,
                                       institution_id=institution_id)
    return paginate(qs, limit, offset)


@router.get("/certificates/{certificate_id}", response={200: CertificateOut, **ERRORS})
def get_certificate(request: HttpRequest, certificate_id: int) -> Any:
    return certificates.certificate_get(principal=principal(request), pk=certificate_id)


@router.get("/certificates/{certificate_id}/pdf", response={200: None, **ERRORS},
            summary="The certificate as PDF (检定证书 / 检定结果通知书)",
            openapi_extra={"responses": {200: {"description": "the PDF", "content": {
                "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}}})
def certificate_pdf(request: HttpRequest, certificate_id: int) -> Any:
    name, data = certificates.certificate_pdf(principal=principal(request), certificate_id=certificate_id)
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@router.post("/certificates/{certificate_id}/revoke", response={200: CertificateOut, **ERRORS_409},
             summary="Revoke a certificate with a reason (logged); it then fails verification")
def revoke_certificate(request: HttpRequest, certificate_id: int, payload: CertificateRevokeIn) -> Any:
    certificates.certificate_revoke(actor=principal(request), certificate_id=certificate_id, reason=payload.reason)
    return certificates.certificate_get(principal=principal(request), pk=certificate_id)


@router.get("/public/keys", response={200: list[PublicKeyOut]}, auth=None,
            summary="Public: every institution's certificate-signing keys, for offline verification")
def public_keys(request: HttpRequest) -> Any:
    return certificates.published_keys()


@router.get("/public/certificates/revoked", response={200: list[RevokedOut]}, auth=None,
            summary="Public: the revocation list (number, issuer, time)")
def public_revoked(request: HttpRequest) -> Any:
    return certificates.revoked_certificates()


@router.post("/public/certificates/verify", response={200: VerifyOut, **ERRORS}, auth=None,
             summary="Public: check a certificate's QR payload (signature, issuer's key, revocation)")
def public_verify(request: HttpRequest, payload: VerifyIn) -> Any:
    check = certificates.certificate_verify(payload.payload)
    data = check.as_dict()
    cert = data if check.number else None  # only what a verified signature vouches for
    return {"valid": check.valid, "reason": check.reason, "message": check.message, "detail": check.detail,
            "certificate": cert}
