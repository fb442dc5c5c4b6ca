"""``jiliang cert …``: issue, verify and revoke electronic certificates (电子检定证书) from the command line.

Wired into :mod:`jiliang.cli` with :func:`add_cert_parser`.  ``jiliang cert verify`` checks a payload
against the institutions' keys published in the database and the revocation list: exit 0 when valid, 1
when not (the reason is printed), 2 on bad input (not a certificate payload at all).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_BAD_INPUT = 2


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    sys.stderr.write(f"jiliang: error: {message}\n")
    return code


def _read_payload(arg: str) -> str:
    return sys.stdin.read() if arg == "-" else arg


def cmd_cert_verify(args: argparse.Namespace) -> int:
    from jiliang.engine.signing import PREFIX
    from jiliang.verification.certificates import certificate_verify, payload_from_text

    text = payload_from_text(_read_payload(args.payload))
    if not text:
        return _fail("no payload given (pass the QR text, or - to read it from standard input)")
    if not text.startswith("JL"):
        return _fail(f"not a certificate payload: it should start with {PREFIX}")
    check = certificate_verify(text)
    if check.reason == "unsupported_version":
        return _fail(f"{check.message} ({check.detail})")
    if args.format == "json":
        _out(orjson.dumps(check.as_dict(), default=str).decode())
    elif check.valid:
        until = f", valid until {check.valid_until}" if check.valid_until else ""
        expired = " — NOTE: its validity has ended" if check.expired else ""
        _out(f"valid: {check.kind_label} {check.number} issued by {check.issuer_name} ({check.issuer_uscc}) for "
             f"{check.device_id} (serial {check.serial}), verified {check.date}, "
             f"{'pass' if check.conclusion == 'pass' else 'fail'}{until}{expired}")
    else:
        which = f" {check.number}" if check.number else ""
        _out(f"NOT valid{which}: {check.reason} — {check.message}" + (f" ({check.detail})" if check.detail else ""))
    return EXIT_VALID if check.valid else EXIT_INVALID


def cmd_cert_issue(args: argparse.Namespace) -> int:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.core.errors import JiliangError
    from jiliang.verification.certificates import certificate_document, certificate_issue
    from jiliang.verification.pdf import render_pdf

    actor = SystemPrincipal()
    try:
        cert = certificate_issue(actor=actor, verification_id=args.verification_id, checker=args.checker or "",
                                 approver=args.approver or "")
    except JiliangError as exc:
        return _fail(exc.message, EXIT_INVALID if exc.status == 409 else EXIT_BAD_INPUT)
    _out(f"{cert.get_kind_display()} {cert.number} issued for verification {args.verification_id}")
    _out(cert.payload)
    if args.pdf:
        out = Path(args.pdf)
        out.write_bytes(render_pdf(certificate_document(cert)))
        _out(f"PDF written to {out}")
    return 0


def cmd_cert_revoke(args: argparse.Namespace) -> int:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.core.errors import JiliangError
    from jiliang.verification.certificates import certificate_revoke
    from jiliang.verification.models import Certificate

    matches = list(Certificate.objects.filter(number=args.number).values_list("pk", flat=True)[:2])
    if not matches:
        return _fail(f"no certificate numbered {args.number}")
    if len(matches) > 1:
        return _fail(f"several institutions issued a certificate numbered {args.number}; revoke it through the API")
    try:
        cert = certificate_revoke(actor=SystemPrincipal(), certificate_id=matches[0], reason=args.reason)
    except JiliangError as exc:
        return _fail(exc.message, EXIT_INVALID if exc.status == 409 else EXIT_BAD_INPUT)
    _out(f"{cert.number} revoked at {cert.revoked_at:%Y-%m-%d %H:%M:%S%z}: {cert.revocation_reason}")
    return 0


def cmd_cert_keys(args: argparse.Namespace) -> int:
    from jiliang.verification.certificates import published_keys

    rows: list[dict[str, Any]] = [
        {"kid": k.kid, "algorithm": k.algorithm, "status": k.status, "institution_uscc": k.organization.uscc,
         "institution_name": k.organization.name, "public_key_hex": k.public_key_hex}
        for k in published_keys()]
    if args.format == "json":
        _out(orjson.dumps(rows).decode())
    else:
        for r in rows:
            _out(f"{r['kid']}\t{r['algorithm']}\t{r['status']}\t{r['institution_uscc']}\t{r['institution_name']}\t"
                 f"{r['public_key_hex']}")
    return 0


def add_cert_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``cert`` (verify, issue, revoke, keys) to the ``jiliang`` command's subparsers."""
    ce: argparse.ArgumentParser = subparsers.add_parser(
        "cert", help="electronic certificates: verify a QR payload, issue, revoke, list keys",
        description="Electronic verification certificates and result notices (检定证书/检定结果通知书), signed "
        "with SM2/SM3 (or Ed25519) by the issuing institution; the QR payload is JL1:… (docs/adr/0006).")
    csub = ce.add_subparsers(dest="cert_command", metavar="ACTION", required=True)

    v = csub.add_parser("verify", help="check a certificate's QR payload",
                        description="Check a payload (JL1:…, or a link ending in /c/JL1:…) against the issuing "
                        "institution's published key and the revocation list. Exit 0 when valid, 1 when not "
                        "(the reason is printed), 2 when the input is not a certificate payload.")
    v.add_argument("payload", help="the QR text (quote it: it contains spaces), or - for standard input")
    v.add_argument("--format", choices=["text", "json"], default="text")
    v.set_defaults(func=cmd_cert_verify)

    i = csub.add_parser("issue", help="issue the certificate or result notice of a verification",
                        description="Issue, as the server operator, the certificate (conforming) or result notice "
                        "(non-conforming) of a verification; prints the number and the signed payload.")
    i.add_argument("verification_id", type=int, help="the verification's id")
    i.add_argument("--checker", help="核验员 (checker)")
    i.add_argument("--approver", help="批准人 (approver)")
    i.add_argument("--pdf", help="also write the PDF to this file")
    i.set_defaults(func=cmd_cert_issue)

    r = csub.add_parser("revoke", help="revoke a certificate by its number (logged)",
                        description="Revoke a certificate; it then fails verification with the reason 'revoked'.")
    r.add_argument("number", help="the certificate number, e.g. JL-MA5F3K2X1-2026-000001")
    r.add_argument("--reason", required=True, help="why (kept with the certificate and in the change log)")
    r.set_defaults(func=cmd_cert_revoke)

    k = csub.add_parser("keys", help="list the institutions' published signing keys",
                        description="Every published signing key (kid, algorithm, status, institution, public key).")
    k.add_argument("--format", choices=["text", "json"], default="text")
    k.set_defaults(func=cmd_cert_keys)
    return ce
