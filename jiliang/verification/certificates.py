"""Electronic certificates and result notices (电子检定证书 / 检定结果通知书): issue, revoke, verify, read.

* :func:`certificate_issue` — the performing institution (or an administrator) issues the certificate
  of a verification: a 检定证书 when it conforms, a 检定结果通知书 (no validity) when it does not.  The
  number ``JL-{organization code}-{year}-{seq:06d}`` is allocated inside the transaction; the payload is
  signed with the institution's active key (created on first use, SM2 with SM3 unless
  ``JILIANG_CERT_ALGORITHM = "ed25519"``).
* :func:`certificate_revoke` — a logged action with a reason; a revoked certificate no longer verifies.
* :func:`certificate_verify` — anyone's check of a QR payload against the published keys and the
  revocation list.
* :func:`certificate_list` / :func:`certificate_get` — reads, scoped like the verification they belong to.
* :func:`published_keys` / :func:`revoked_certificates` — what is published for offline checkers.

Private keys are sealed with AES-256-GCM under a key derived (HKDF) from ``JILIANG_KEY_ENCRYPTION_SECRET``
or, when that is not set, Django's ``SECRET_KEY``.  Changing that secret makes the sealed keys unreadable:
rotate keys (``institution_key_create``) rather than change it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, unquote

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone, translation

from jiliang.accounts.roles import Role, Scope
from jiliang.core.changelog import log_change, snapshot
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied, Problem
from jiliang.engine import signing
from jiliang.registry.models import InstrumentType, Organization
from jiliang.verification import pdf
from jiliang.verification.models import (
    Certificate,
    CertificateKind,
    CertificateSequence,
    InstitutionKey,
    InstitutionKeySecret,
    KeyStatus,
    Verification,
)

ALGORITHM_LABELS = {signing.SM2: "SM2/SM3", signing.ED25519: "Ed25519"}

# Reasons a check fails beyond the offline ones of jiliang.engine.signing.REASONS (stable codes).
REASONS: dict[str, str] = {
    **signing.REASONS,
    "revoked": "该证书已被发证机构撤销",
    "unknown_certificate": "签名有效，但发证机构没有这份证书的记录",
    "not_issued": "签名有效，但内容与发证机构登记的证书不一致",
}


# ------------------------------------------------------------------------------------------------- keys

def _master_secret() -> bytes:
    secret = getattr(settings, "JILIANG_KEY_ENCRYPTION_SECRET", "") or settings.SECRET_KEY
    return str(secret).encode()


def _algorithm(algorithm: str | None) -> str:
    alg = algorithm or getattr(settings, "JILIANG_CERT_ALGORITHM", signing.SM2)
    if alg not in signing.ALGORITHMS:
        raise JiliangError(f"unknown signature algorithm {alg!r} (use sm2 or ed25519)", code="validation_failed",
                           details=[Problem(None, "algorithm", "use sm2 or ed25519")])
    return str(alg)


def _may_sign_for(scope: Scope, institution_id: int) -> str | None:
    """None when ``scope`` may issue or revoke in the name of the institution, else the reason."""
    if scope.is_admin:
        return None
    if scope.role in (Role.INSTITUTE, Role.MANUFACTURER) and scope.org_id == institution_id:
        return None
    return "only the institution that performed the verification issues or revokes its certificate"


def institution_key_create(*, actor: Any, organization_id: int, algorithm: str | None = None) -> InstitutionKey:
    """A new active signing key for an institution (生成机构签名密钥); the previous active key is retired
    (it stays published so that what it signed keeps verifying).  Administrators or the institution."""
    reason = _may_sign_for(Scope.of(actor), organization_id)
    if reason:
        raise PermissionDenied(reason)
    alg = _algorithm(algorithm)
    with transaction.atomic():
        org = Organization.objects.select_for_update().filter(pk=organization_id).first()
        if org is None:
            raise NotFound(f"organization {organization_id} not found")
        key, _pair = _create_key(actor, org, alg)
    return key


def _create_key(actor: Any, org: Organization, algorithm: str) -> tuple[InstitutionKey, signing.KeyPair]:
    now = timezone.now()
    for old in InstitutionKey.objects.select_for_update().filter(organization=org, status=KeyStatus.ACTIVE):
        before = snapshot(old)
        old.status, old.retired_at = KeyStatus.RETIRED, now
        old.save(update_fields=["status", "retired_at"])
        log_change(actor=actor, obj=old, action="update", before=before)
    pair = signing.generate_key(algorithm)
    key = InstitutionKey(organization=org, kid=pair.kid, algorithm=algorithm, public_key_hex=pair.public_key_hex)
    key.full_clean()
    key.save()
    InstitutionKeySecret.objects.create(
        key=key, sealed_private_key=signing.seal_private_key(_master_secret(), pair.private_key, kid=pair.kid))
    log_change(actor=actor, obj=key, action="create")
    return key, pair


def _active_key(actor: Any, org: Organization) -> tuple[InstitutionKey, signing.KeyPair]:
    """The institution's active key with its private half, created on first use."""
    key = (InstitutionKey.objects.select_related("secret").filter(organization=org, status=KeyStatus.ACTIVE)
           .first())
    if key is None:
        return _create_key(actor, org, _algorithm(None))
    try:
        private = signing.unseal_private_key(_master_secret(), key.secret.sealed_private_key, kid=key.kid)
    except (signing.SigningError, InstitutionKeySecret.DoesNotExist):
        raise JiliangError(f"the signing key {key.kid} of {org.name} cannot be unsealed (was the secret changed?); "
                           "create a new key for the institution", code="key_unavailable", status=409) from None
    public = bytes.fromhex(key.public_key_hex)
    if signing.public_key_of(key.algorithm, private) != public:
        raise JiliangError(f"the signing key {key.kid} does not match its public key", code="key_unavailable",
                           status=409)
    return key, signing.KeyPair(key.algorithm, private, public)


# ---------------------------------------------------------------------------------------------- numbers

def organization_code(uscc: str) -> str:
    """The 9-character organisation code inside a credit code (positions 9–17, GB 32100), which
    identifies the organisation nationally and so keeps certificate numbers unique across institutions.

    >>> organization_code("91440300MA5F3K2X1A")
    'MA5F3K2X1'
    """
    return uscc[8:17] if len(uscc) == 18 else uscc


def certificate_number(uscc: str, year: int, seq: int) -> str:
    """``JL-{organization code}-{year}-{seq:06d}``.

    >>> certificate_number("91440300MA5F3K2X1A", 2026, 7)
    'JL-MA5F3K2X1-2026-000007'
    """
    return f"JL-{organization_code(uscc)}-{year}-{seq:06d}"


def _next_seq(institution_id: int, year: int) -> int:
    """The next number for the institution and year.  The UPDATE takes the row's write lock before the
    value is read, so concurrent issuers queue instead of reading the same value (SQLite and PostgreSQL)."""
    for _attempt in range(2):
        updated = CertificateSequence.objects.filter(institution_id=institution_id, year=year).update(
            last=F("last") + 1)
        if updated:
            return int(CertificateSequence.objects.get(institution_id=institution_id, year=year).last)
        try:
            with transaction.atomic():
                CertificateSequence.objects.create(institution_id=institution_id, year=year, last=1)
            return 1
        except IntegrityError:  # another transaction created the row first: increment it
            continue
    raise JiliangError("could not allocate a certificate number, try again", code="conflict", status=409)


# ---------------------------------------------------------------------------------------------- issuing

def _visible_verification(actor: Any, verification_id: int) -> Verification:
    v = (Verification.objects.restrict(actor, "view")
         .select_related("instrument", "instrument__instrument_type", "institution")
         .filter(pk=verification_id).first())
    if v is None:
        raise NotFound(f"verification {verification_id} not found")
    return v


def _actor_name(actor: Any) -> str:
    full = getattr(actor, "get_full_name", None)
    name = full() if callable(full) else ""
    return str(name or getattr(actor, "username", "") or "")[:50]


def certificate_issue(*, actor: Any, verification_id: int, checker: str = "", approver: str = "") -> Certificate:
    """Issue the certificate (检定证书) or result notice (检定结果通知书) of a verification.

    Only the institution that performed the verification (its institute or, for a factory verification,
    manufacturer users) or an administrator may issue; a verification has at most one certificate.
    ``approver`` (批准人) defaults to the acting person's name.
    """
    checker, approver = checker.strip()[:50], (approver.strip() or _actor_name(actor))[:50]
    v = _visible_verification(actor, verification_id)
    reason = _may_sign_for(Scope.of(actor), v.institution_id)
    if reason:
        raise PermissionDenied(reason)
    try:
        with transaction.atomic():
            v = Verification.objects.select_for_update(of=("self",)).select_related(
                "instrument", "instrument__instrument_type", "institution").get(pk=v.pk)
            if Certificate.objects.filter(verification=v).exists():
                raise JiliangError(f"verification {v.pk} already has a certificate", code="already_issued",
                                   status=409)
            key, pair = _active_key(actor, v.institution)
            now = timezone.now()
            year = timezone.localdate(now).year
            seq = _next_seq(v.institution_id, year)
            number = certificate_number(v.institution.uscc, year, seq)
            is_cert = bool(v.conforming)
            inst = v.instrument
            claims = signing.CertificateClaims(
                number=number, issuer=v.institution.uscc, kind="C" if is_cert else "N", device_id=inst.device_id,
                instrument_type=inst.instrument_type_id, serial=inst.serial, date=v.date.isoformat(),
                conclusion="pass" if is_cert else "fail",
                valid_until=v.valid_until.isoformat() if (is_cert and v.valid_until) else None,
                accuracy_class=inst.accuracy_class, issued_at=int(now.timestamp()))
            cert = Certificate(
                verification=v, institution=v.institution, number=number, year=year, seq=seq,
                kind=CertificateKind.CERTIFICATE if is_cert else CertificateKind.RESULT_NOTICE, key=key,
                checker=checker, approver=approver, issued_at=now, issued_by=str(getattr(actor, "username", actor)),
                payload=signing.encode_payload(claims, pair))
            cert.full_clean(validate_unique=False, validate_constraints=False)
            cert.save()
            log_change(actor=actor, obj=cert, action="create")
            taken = Verification.objects.filter(institution_id=v.institution_id, certificate_no=number).exists()
            if not v.certificate_no and not taken:
                before = snapshot(v)
                v.certificate_no = number
                v.save(update_fields=["certificate_no"])
                log_change(actor=actor, obj=v, action="update", before=before)
    except IntegrityError:  # a concurrent issue of the same verification, or a number taken meanwhile
        if Certificate.objects.filter(verification_id=verification_id).exists():
            raise JiliangError(f"verification {verification_id} already has a certificate", code="already_issued",
                               status=409) from None
        raise JiliangError("the certificate could not be stored because of a concurrent change; try again",
                           code="conflict", status=409) from None
    return cert


def certificate_revoke(*, actor: Any, certificate_id: int, reason: str) -> Certificate:
    """Revoke a certificate (撤销证书) with a reason; logged.  The issuing institution or an administrator."""
    reason = (reason or "").strip()
    if not reason:
        raise JiliangError("a revocation needs a reason", code="validation_failed",
                           details=[Problem(None, "reason", "required")])
    if len(reason) > 300:
        raise JiliangError("the reason is too long", code="validation_failed",
                           details=[Problem(None, "reason", "at most 300 characters")])
    cert = certificate_get(principal=actor, pk=certificate_id)
    denied = _may_sign_for(Scope.of(actor), cert.institution_id)
    if denied:
        raise PermissionDenied(denied)
    with transaction.atomic():
        cert = Certificate.objects.select_for_update().get(pk=cert.pk)
        if cert.revoked_at is not None:
            raise JiliangError(f"certificate {cert.number} was already revoked", code="already_revoked", status=409)
        before = snapshot(cert)
        cert.revoked_at = timezone.now()
        cert.revocation_reason = reason
        cert.save(update_fields=["revoked_at", "revocation_reason"])
        log_change(actor=actor, obj=cert, action="update", before=before)
    return cert


# ------------------------------------------------------------------------------------------------ reads

def certificate_list(*, principal: Any, institution_id: int | None = None, kind: str = "",
                     revoked: bool | None = None, device_id: str = "") -> QuerySet[Certificate]:
    qs = Certificate.objects.restrict(principal, "view").select_related(
        "verification", "verification__instrument", "institution", "key")
    if institution_id is not None:
        qs = qs.filter(institution_id=institution_id)
    if kind:
        qs = qs.filter(kind=kind)
    if revoked is not None:
        qs = qs.filter(revoked_at__isnull=not revoked)
    if device_id:
        qs = qs.filter(verification__instrument__device_id=device_id)
    return qs.order_by("-issued_at", "-id")


def certificate_get(*, principal: Any, pk: int) -> Certificate:
    cert = certificate_list(principal=principal).filter(pk=pk).first()
    if cert is None:
        raise NotFound(f"certificate {pk} not found")
    return cert


def published_keys() -> list[InstitutionKey]:
    """Every institution key that has signed (active and retired): the public list (公开密钥列表)."""
    return list(InstitutionKey.objects.published())


def revoked_certificates() -> list[Certificate]:
    """The revocation list (撤销列表): number, issuer and time of every revoked certificate."""
    return list(Certificate.objects.filter(revoked_at__isnull=False).select_related("institution")
                .order_by("-revoked_at", "-id"))


# ----------------------------------------------------------------------------------------------- verify

@dataclass(frozen=True)
class CertificateCheck:
    """The answer to "is this certificate genuine?" (证书验证结果) for the public page, API and CLI."""

    valid: bool
    reason: str
    message: str
    detail: str = ""
    number: str = ""
    kind: str = ""                      # certificate | result_notice
    kind_label: str = ""
    issuer_uscc: str = ""
    issuer_name: str = ""
    device_id: str = ""
    instrument_type: str = ""
    instrument_type_name: str = ""
    serial: str = ""
    accuracy_class: str = ""
    date: str = ""
    valid_until: str | None = None
    conclusion: str = ""                # pass | fail
    expired: bool = False
    revoked_at: dt.datetime | None = None
    kid: str = ""
    algorithm: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def payload_from_text(text: str) -> str:
    """The payload inside what a scanner returns: the bare ``JL1:…`` text, or a link ``…/c/JL1:…``."""
    text = (text or "").strip()
    if text.lower().startswith(("http://", "https://")) and "/c/" in text:
        return unquote(text.split("/c/", 1)[1]).strip()
    return text


def qr_text(payload: str) -> str:
    """What the QR code on the PDF holds: the bare payload, or a link to the public check page when
    ``JILIANG_PUBLIC_BASE_URL`` is set (then any phone camera opens the check directly)."""
    base = str(getattr(settings, "JILIANG_PUBLIC_BASE_URL", "") or "").rstrip("/")
    if not base:
        return payload
    return f"{base}/c/{quote(payload, safe=':$*+-./')}"


def published_key_map(kid: str | None = None) -> dict[str, signing.PublishedKey]:
    """Published keys by kid (all of them, or just ``kid``), as the offline checker takes them."""
    qs = InstitutionKey.objects.published()
    if kid is not None:
        qs = qs.filter(kid=kid)
    return {k.kid: signing.PublishedKey(k.kid, k.algorithm, bytes.fromhex(k.public_key_hex), k.organization.uscc)
            for k in qs}


def certificate_verify(payload: str) -> CertificateCheck:
    """Check a QR payload: signature against the issuer's published key, then the issuer's records and the
    revocation list.  Never raises on bad input: the answer says why it is not valid.  The certificate's
    fields are filled only once the signature has verified (a revoked certificate still shows them)."""
    text = payload_from_text(payload)
    try:
        decoded = signing.decode_payload(text)
    except signing.PayloadError as exc:
        return CertificateCheck(False, exc.reason, REASONS[exc.reason], exc.detail)
    offline = signing.verify_payload(text, published_key_map(decoded.kid))
    if not offline.valid:  # what the payload claims is not shown: nobody vouches for it
        return CertificateCheck(False, offline.reason, REASONS[offline.reason], offline.detail)
    fields = _claim_fields(decoded)
    key = InstitutionKey.objects.select_related("organization").get(kid=decoded.kid)
    fields["issuer_name"] = key.organization.name
    cert = Certificate.objects.filter(institution_id=key.organization_id, number=decoded.claims.number).first()
    if cert is None:
        return CertificateCheck(False, "unknown_certificate", REASONS["unknown_certificate"], "", **fields)
    if signing.decode_payload(cert.payload).body != decoded.body:
        return CertificateCheck(False, "not_issued", REASONS["not_issued"], "", **fields)
    if cert.revoked_at is not None:
        return CertificateCheck(False, "revoked", REASONS["revoked"], "", revoked_at=cert.revoked_at, **fields)
    return CertificateCheck(True, "ok", REASONS["ok"], "", **fields)


def _claim_fields(decoded: signing.DecodedPayload) -> dict[str, Any]:
    c = decoded.claims
    is_cert = c.kind == "C"
    type_name = InstrumentType.objects.filter(pk=c.instrument_type).values_list("name_zh", flat=True).first()
    expired = bool(is_cert and c.valid_until and c.valid_until < timezone.localdate().isoformat())
    kind = CertificateKind.CERTIFICATE if is_cert else CertificateKind.RESULT_NOTICE
    return {"number": c.number, "kind": str(kind.value),
            "kind_label": "检定证书" if is_cert else "检定结果通知书", "issuer_uscc": c.issuer,
            "device_id": c.device_id, "instrument_type": c.instrument_type,
            "instrument_type_name": type_name or c.instrument_type, "serial": c.serial,
            "accuracy_class": c.accuracy_class, "date": c.date, "valid_until": c.valid_until if is_cert else None,
            "conclusion": c.conclusion, "expired": expired, "kid": decoded.kid, "algorithm": decoded.algorithm}


# -------------------------------------------------------------------------------------------------- PDF

_UNITS = {"pct": "%", "g": "g"}


def _fmt(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


def _environment(v: Verification) -> str:
    parts = []
    if v.temperature_c is not None:
        parts.append(f"温度 {v.temperature_c:g} ℃")
    if v.humidity_pct is not None:
        parts.append(f"相对湿度 {v.humidity_pct:g} %")
    return "，".join(parts)


def _result_rows(points: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[pdf.ResultRow]:
    rows = []
    for i, r in enumerate(results):
        p = points[i] if i < len(points) and isinstance(points[i], dict) else {}
        err_key = next((k for k in p if str(k).startswith("error_")), "")
        unit = _UNITS.get(err_key.removeprefix("error_"), err_key.removeprefix("error_"))
        error = f"{_fmt(p[err_key])}{unit}" if err_key else "—"
        rows.append(pdf.ResultRow(point=str(r.get("point", i + 1)), error=error, mpe=f"±{_fmt(r.get('mpe', ''))}{unit}",
                                  margin=f"{_fmt(r.get('margin', ''))}{unit}", passed=r.get("verdict") == "pass"))
    return rows


def certificate_document(cert: Certificate) -> pdf.CertificateDocument:
    """What the PDF prints, gathered from the certificate, its verification and the registry."""
    v = (Verification.objects.select_related("instrument", "instrument__instrument_type", "instrument__model",
                                             "instrument__maker", "instrument__owner", "instrument__place",
                                             "institution").get(pk=cert.verification_id))
    inst = v.instrument
    itype = inst.instrument_type
    is_cert = cert.kind == CertificateKind.CERTIFICATE
    cls = inst.accuracy_class
    with translation.override("zh-hans"):
        kind_label, stage_label = str(v.get_kind_display()), str(v.get_stage_display())
    place = inst.place
    location = f"{place.name}（{place.address}）" if place and place.address else (place.name if place else "")
    issued_local = timezone.localtime(cert.issued_at)
    return pdf.CertificateDocument(
        number=cert.number, is_certificate=is_cert, institution_name=v.institution.name,
        institution_uscc=v.institution.uscc, institution_address=v.institution.address,
        institution_phone=v.institution.contact_phone, client_name=inst.owner.name, client_address=inst.owner.address,
        instrument_name=itype.name_zh, model=inst.model.name, accuracy_class=cls, serial=inst.serial,
        device_id=inst.device_id, manufacturer=inst.maker.name, regulation=itype.regulation,
        conclusion=(f"{cls}级 合格" if cls else "合格") if is_cert else "不合格", verifier=v.verifier,
        checker=cert.checker, approver=cert.approver, verification_date=v.date,
        valid_until=v.valid_until if is_cert else None, issued_at=issued_local, kind_label=kind_label,
        stage_label=stage_label, location=location, record_no=f"JLV-{v.pk:08d}",
        rows=_result_rows(list(v.points or []), list(v.results or [])), payload=cert.payload,
        qr_text=qr_text(cert.payload), kid=cert.key.kid, algorithm_label=ALGORITHM_LABELS[cert.key.algorithm],
        revoked=cert.revoked_at is not None, standards=v.standards, environment=_environment(v))


def certificate_pdf(*, principal: Any, certificate_id: int) -> tuple[str, bytes]:
    """The certificate's PDF and a file name for it, for whoever may see the certificate."""
    cert = certificate_get(principal=principal, pk=certificate_id)
    return f"{cert.number}.pdf", pdf.render_pdf(certificate_document(cert))
