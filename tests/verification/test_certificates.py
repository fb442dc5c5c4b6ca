"""Certificates and result notices: issue, numbering, who may issue, revocation, the PDF, the public check."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils import timezone
from pypdf import PdfReader
from pypdf.generic import ContentStream

from jiliang.accounts.models import SystemPrincipal
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.core.models import ChangeLog
from jiliang.engine import signing
from jiliang.verification import certificates as certs
from jiliang.verification.cli import add_cert_parser
from jiliang.verification.models import (
    Certificate,
    CertificateSequence,
    InstitutionKey,
    InstitutionKeySecret,
    KeyStatus,
    Verification,
)
from jiliang.verification.pdf import render_pdf
from jiliang.verification.services import verification_record
from tests.world import World

pytestmark = pytest.mark.django_db

WATER_OK = [{"point": "Q1", "error_pct": 4.0}, {"point": "Q2", "error_pct": 1.2}, {"point": "Q3", "error_pct": -0.4}]
SCALE_BAD = [{"load_g": 2500, "error_g": 2.5}, {"load_g": 15000, "error_g": 8}]


def record(world: World, device: str, points: list[dict[str, Any]], date: str = "2026-03-01",
           kind: str = "periodic", institution: str = "inst") -> Verification:
    return verification_record(actor=SystemPrincipal(), device_id=device, kind=kind, date=date,
                               institution_uscc=world.orgs[institution].uscc, points=points, verifier="王检定")


def issue(world: World, v: Verification, user: str = "futian_institute") -> Certificate:
    return certs.certificate_issue(actor=world.users[user], verification_id=v.pk, checker="李核验")


def _to_unicode(font: Any) -> dict[int, str]:
    data = font["/ToUnicode"].get_object().get_data().decode("latin-1")
    out: dict[int, str] = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", data, re.S):
        for src, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            out[int(src, 16)] = bytes.fromhex(dst).decode("utf-16-be")
    for block in re.findall(r"beginbfrange(.*?)endbfrange", data, re.S):
        for a, b, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            for i, code in enumerate(range(int(a, 16), int(b, 16) + 1)):
                out[code] = chr(int(dst, 16) + i)
    return out


def pdf_text(data: bytes) -> str:
    """The text the PDF shows, without whitespace, decoded through each font's ToUnicode map (two-byte
    Identity-H codes).  pypdf's own extract_text misreads these codes as single bytes, poppler does not;
    decoding them here keeps the test independent of either."""
    reader = PdfReader(io.BytesIO(data))
    shown: list[str] = []
    for page in reader.pages:
        fonts = {name: _to_unicode(f.get_object()) for name, f in page["/Resources"]["/Font"].items()}
        cmap: dict[int, str] = {}
        for operands, op in ContentStream(page.get_contents(), reader).operations:
            if op == b"Tf":
                cmap = fonts[operands[0]]
            elif op in (b"Tj", b"TJ"):
                for item in (operands[0] if op == b"TJ" else [operands[0]]):
                    if isinstance(item, bytes | str):
                        raw = item if isinstance(item, bytes) else item.original_bytes
                        shown += [cmap.get(int.from_bytes(raw[i:i + 2], "big"), "?") for i in range(0, len(raw), 2)]
    return re.sub(r"\s+", "", "".join(shown))


@pytest.fixture
def ed25519(settings: Any) -> None:
    """Most tests sign with Ed25519 (fast); SM2, the default, has its own tests."""
    settings.JILIANG_CERT_ALGORITHM = "ed25519"


# ----------------------------------------------------------------------------------------------- issuing

def test_certificate_for_a_conforming_verification_is_signed_with_sm2_by_default(world: World) -> None:
    v = record(world, "WM-N-1", WATER_OK)
    cert = issue(world, v)
    assert cert.kind == "certificate" and cert.key.algorithm == "sm2"
    year = timezone.localdate().year
    assert cert.number == f"JL-{world.orgs['inst'].uscc[8:17]}-{year}-000001"
    check = certs.certificate_verify(cert.payload)
    assert check.valid and check.reason == "ok", check
    assert (check.number, check.issuer_name, check.device_id, check.conclusion) == (
        cert.number, "福田区计量检定所", "WM-N-1", "pass")
    assert check.valid_until == v.valid_until.isoformat() if v.valid_until else check.valid_until is None
    v.refresh_from_db()
    assert v.certificate_no == cert.number


def test_result_notice_for_a_failing_verification_has_no_validity(world: World, ed25519: None) -> None:
    v = record(world, "SC-F-1", SCALE_BAD)
    assert not v.conforming and v.valid_until is None
    notice = issue(world, v)
    assert notice.kind == "result_notice"
    decoded = signing.decode_payload(notice.payload)
    assert decoded.claims.kind == "N" and decoded.claims.valid_until is None and decoded.claims.conclusion == "fail"
    check = certs.certificate_verify(notice.payload)
    assert check.valid and check.kind == "result_notice" and check.valid_until is None
    text = pdf_text(render_pdf(certs.certificate_document(notice)))
    assert "检定结果通知书" in text and "不合格" in text and "有效期至" not in text
    assert "15000g" in text  # the non-conforming point is listed


def test_numbers_run_per_institution_and_year(world: World, ed25519: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    year = timezone.localdate().year
    a = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-02"))
    b = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-03"))
    assert (a.seq, b.seq) == (1, 2) and b.number.endswith(f"-{year}-000002")
    # another institution (a manufacturer issuing its factory verification) has its own sequence
    f = record(world, "SC-N-1", [{"load_g": 100, "error_g": 1}], kind="factory", institution="maker")
    c = issue(world, f, user="maker_user")
    assert c.seq == 1 and c.number == f"JL-{world.orgs['maker'].uscc[8:17]}-{year}-000001"
    # a new year starts again at 1; last year's counter is left alone
    next_new_year = dt.datetime(year + 1, 1, 1, 9, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(certs.timezone, "now", lambda: next_new_year)
    d = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-04"))
    assert (d.year, d.seq) == (year + 1, 1) and d.number.endswith(f"-{year + 1}-000001")
    assert CertificateSequence.objects.get(institution=world.orgs["inst"], year=year).last == 2


def test_only_the_performing_institution_or_an_admin_issues(world: World, ed25519: None) -> None:
    v = record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}])
    for name in ("city_regulator", "futian_regulator", "stall_f_user", "maker_user"):
        with pytest.raises(PermissionDenied):
            issue(world, v, user=name)
    for name in ("water_user", "citizen"):  # cannot even see the verification
        with pytest.raises(NotFound):
            issue(world, v, user=name)
    assert not Certificate.objects.exists()
    cert = issue(world, v, user="futian_institute")
    assert cert.approver == "futian_institute"  # defaults to the person issuing
    with pytest.raises(JiliangError) as exc:
        issue(world, v, user="admin")
    assert exc.value.code == "already_issued" and exc.value.status == 409
    # an administrator may issue in the institution's name
    other = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-02-01"), user="admin")
    assert other.institution_id == world.orgs["inst"].pk


def test_the_key_is_created_once_sealed_and_never_logged(world: World, ed25519: None) -> None:
    issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-02"))
    issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-03"))
    key = InstitutionKey.objects.get(organization=world.orgs["inst"])
    assert key.status == KeyStatus.ACTIVE and key.algorithm == "ed25519"
    sealed = InstitutionKeySecret.objects.get(key=key).sealed_private_key
    assert sealed.startswith("v1:")
    logged = " ".join(str(r.after) for r in ChangeLog.objects.all())
    assert sealed[3:20] not in logged and "sealed_private_key" not in logged
    assert ChangeLog.objects.filter(model="institutionkey", action="create").count() == 1
    assert ChangeLog.objects.filter(model="certificate", action="create").count() == 2


def test_a_changed_secret_is_reported_not_silently_used(world: World, ed25519: None, settings: Any) -> None:
    issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-02"))
    settings.JILIANG_KEY_ENCRYPTION_SECRET = "a different secret"
    with pytest.raises(JiliangError) as exc:
        issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-03"))
    assert exc.value.code == "key_unavailable"


def test_rotated_keys_keep_old_certificates_valid(world: World, ed25519: None) -> None:
    old = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-02"))
    new_key = certs.institution_key_create(actor=world.users["futian_institute"],
                                           organization_id=world.orgs["inst"].pk, algorithm="sm2")
    new = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date="2026-01-03"))
    assert new.key_id == new_key.pk and old.key_id != new_key.pk
    assert InstitutionKey.objects.get(pk=old.key_id).status == KeyStatus.RETIRED
    assert certs.certificate_verify(old.payload).valid and certs.certificate_verify(new.payload).valid
    with pytest.raises(PermissionDenied):
        certs.institution_key_create(actor=world.users["maker_user"], organization_id=world.orgs["inst"].pk)


# ---------------------------------------------------------------------------------------------- revoking

def test_revoked_certificate_fails_and_the_revocation_is_logged(world: World, ed25519: None) -> None:
    cert = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}]))
    with pytest.raises(PermissionDenied):
        certs.certificate_revoke(actor=world.users["futian_regulator"], certificate_id=cert.pk, reason="x")
    with pytest.raises(JiliangError) as exc:
        certs.certificate_revoke(actor=world.users["futian_institute"], certificate_id=cert.pk, reason="  ")
    assert exc.value.details[0].field == "reason"
    certs.certificate_revoke(actor=world.users["futian_institute"], certificate_id=cert.pk, reason="录入错误")
    check = certs.certificate_verify(cert.payload)
    assert not check.valid and check.reason == "revoked" and check.revoked_at is not None
    assert check.number == cert.number  # the page still says which certificate it was
    log = ChangeLog.objects.filter(model="certificate", object_id=str(cert.pk), action="update").get()
    assert log.before["revoked_at"] is None and log.after["revocation_reason"] == "录入错误"
    assert log.actor_label == "futian_institute"
    with pytest.raises(JiliangError) as again:
        certs.certificate_revoke(actor=world.users["admin"], certificate_id=cert.pk, reason="twice")
    assert again.value.code == "already_revoked"
    assert [c.number for c in certs.revoked_certificates()] == [cert.number]
    assert "已被发证机构撤销" in pdf_text(render_pdf(certs.certificate_document(Certificate.objects.get(pk=cert.pk))))


def test_forged_or_unknown_payloads_fail(world: World, ed25519: None) -> None:
    cert = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}]))
    i = len(cert.payload) // 2
    altered = cert.payload[:i] + ("A" if cert.payload[i] != "A" else "B") + cert.payload[i + 1:]
    tampered = certs.certificate_verify(altered)
    assert not tampered.valid and tampered.number == ""  # nothing unverified is shown as if it were true
    # the institution's real key signing something it never issued
    key = InstitutionKey.objects.get(organization=world.orgs["inst"])
    private = signing.unseal_private_key(certs._master_secret(), key.secret.sealed_private_key, kid=key.kid)
    pair = signing.KeyPair(key.algorithm, private, bytes.fromhex(key.public_key_hex))
    claims = signing.decode_payload(cert.payload).claims
    forged = signing.encode_payload(replace(claims, number="JL-X-2026-999999"), pair)
    assert certs.certificate_verify(forged).reason == "unknown_certificate"
    changed = signing.encode_payload(replace(claims, valid_until="2099-01-01"), pair)
    assert certs.certificate_verify(changed).reason == "not_issued"
    assert certs.certificate_verify("not a payload").reason == "malformed"


def test_an_expired_certificate_is_genuine_but_says_so(world: World, ed25519: None) -> None:
    old = (timezone.localdate() - dt.timedelta(days=800)).isoformat()
    cert = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}], date=old))
    check = certs.certificate_verify(cert.payload)
    assert check.valid and check.expired


# -------------------------------------------------------------------------------------------------- PDF

def test_pdf_has_the_number_and_the_cover_fields(world: World) -> None:
    v = record(world, "WM-N-1", WATER_OK)
    cert = issue(world, v)
    data = render_pdf(certs.certificate_document(cert))
    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    for expected in (cert.number, "检定证书", "饮用冷水水表", "LXS-15", "S-WM-N-1", "深圳衡器制造有限公司",
                     "深圳市水务集团有限公司", "JJG162-2019", "2级合格", "王检定", "李核验", "futian_institute",
                     "有效期至", "第1页", "共2页", "±5%", "以下空白"):
        assert expected in text, expected
    assert len(PdfReader(io.BytesIO(data)).pages) == 2


def test_pdf_font_is_embedded_and_rare_characters_do_not_break_it(world: World, ed25519: None) -> None:
    stall = world.orgs["stall_f"]
    stall.name = "福田区𠀀喆记水产店"  # U+20000 is in no font: printed as 〓
    stall.save()
    cert = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}]))
    data = render_pdf(certs.certificate_document(cert))
    reader = PdfReader(io.BytesIO(data))
    fonts = reader.pages[0]["/Resources"]["/Font"]
    descendants = [f.get_object()["/DescendantFonts"][0].get_object() for f in fonts.values()]
    assert all("/FontFile3" in d["/FontDescriptor"] or "/FontFile2" in d["/FontDescriptor"] for d in descendants)
    assert "福田区〓" in pdf_text(data)


# ------------------------------------------------------------------------------------ public API and page

def test_public_verify_endpoint_needs_no_login(world: World, ed25519: None) -> None:
    cert = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}]))
    c = Client()
    r = c.post("/api/v1/public/certificates/verify", {"payload": cert.payload}, content_type="application/json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["valid"] is True and body["reason"] == "ok"
    assert body["certificate"]["number"] == cert.number and body["certificate"]["issuer_name"] == "福田区计量检定所"
    r = c.post("/api/v1/public/certificates/verify", {"payload": "JL1:ABC"}, content_type="application/json")
    assert r.json()["valid"] is False and r.json()["reason"] == "malformed" and r.json()["certificate"] is None
    stranger = signing.generate_key(signing.ED25519)
    forged = signing.encode_payload(signing.decode_payload(cert.payload).claims, stranger)
    r = c.post("/api/v1/public/certificates/verify", {"payload": forged}, content_type="application/json")
    assert r.json()["reason"] == "unknown_key" and r.json()["certificate"] is None
    keys = c.get("/api/v1/public/keys").json()
    assert [k["kid"] for k in keys] == [cert.key.kid] and "PRIVATE" not in str(keys)
    assert keys[0]["institution_uscc"] == world.orgs["inst"].uscc


def test_public_page_shows_valid_invalid_and_revoked(world: World, ed25519: None) -> None:
    cert = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}]))
    c = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    empty = c.get("/c/verify/")
    assert empty.status_code == 200 and "证书真伪查验" in empty.content.decode()
    html = c.get("/c/verify/", {"payload": cert.payload}).content.decode()
    assert 'data-valid="true"' in html and "真实有效" in html and cert.number in html and "福田区计量检定所" in html
    deep = c.get("/c/" + quote(cert.payload, safe=":/"))
    assert deep.status_code == 200 and 'data-valid="true"' in deep.content.decode()
    bad = c.get("/c/verify/", {"payload": cert.payload[:-3] + "AAA"}).content.decode()
    assert 'data-valid="false"' in bad and "验证未通过" in bad
    certs.certificate_revoke(actor=world.users["admin"], certificate_id=cert.pk, reason="复核发现错误")
    revoked = c.get("/c/verify/", {"payload": cert.payload}).content.decode()
    assert 'data-reason="revoked"' in revoked and "已撤销" in revoked and "复核发现错误" not in revoked


def test_qr_link_form_is_accepted(world: World, ed25519: None, settings: Any) -> None:
    settings.JILIANG_PUBLIC_BASE_URL = "https://jl.example.gov.cn"
    cert = issue(world, record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}]))
    link = certs.qr_text(cert.payload)
    assert link.startswith("https://jl.example.gov.cn/c/JL1:") and " " not in link
    assert certs.certificate_verify(link).valid


# ------------------------------------------------------------------------------------------------- CLI

def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="jiliang")
    add_cert_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_issue_verify_revoke(world: World, ed25519: None, capsys: pytest.CaptureFixture[str],
                                 tmp_path: Any) -> None:
    v = record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}])
    pdf_path = tmp_path / "c.pdf"
    code, out, _ = run_cli(["cert", "issue", str(v.pk), "--pdf", str(pdf_path)], capsys)
    assert code == 0 and pdf_path.read_bytes().startswith(b"%PDF")
    number, payload = out.splitlines()[0].split()[1], out.splitlines()[1]
    code, out, _ = run_cli(["cert", "verify", payload], capsys)
    assert code == 0 and out.startswith("valid:") and number in out
    code, out, _ = run_cli(["cert", "verify", payload[:-2] + "00"], capsys)
    assert code == 1 and out.startswith("NOT valid")
    code, _, err = run_cli(["cert", "verify", "hello"], capsys)
    assert code == 2 and "JL1:" in err
    code, _, err = run_cli(["cert", "issue", str(v.pk)], capsys)
    assert code == 1 and "already" in err
    code, _, err = run_cli(["cert", "issue", "999999"], capsys)
    assert code == 2 and "not found" in err
    code, out, _ = run_cli(["cert", "revoke", number, "--reason", "测试撤销"], capsys)
    assert code == 0 and "revoked" in out
    code, out, _ = run_cli(["cert", "verify", payload, "--format", "json"], capsys)
    assert code == 1 and '"reason":"revoked"' in out
    code, out, _ = run_cli(["cert", "keys"], capsys)
    assert code == 0 and world.orgs["inst"].uscc in out


def test_certificate_responses_match_the_openapi_document(world: World, ed25519: None) -> None:
    from tests.api.test_openapi import check

    v = record(world, "SC-F-1", [{"load_g": 100, "error_g": 1}])
    c = Client()
    c.force_login(world.users["futian_institute"])
    url = f"/api/v1/verifications/{v.pk}/certificate"
    body = check("post", url, c.post(url, {"approver": "张华"}, content_type="application/json"))
    assert body["approver"] == "张华" and body["kid"] and body["pdf_url"].endswith("/pdf")
    check("post", url, c.post(url, {}, content_type="application/json"))  # 409, documented
    cid = body["id"]
    check("get", "/api/v1/certificates", c.get("/api/v1/certificates"))
    check("get", f"/api/v1/certificates/{cid}", c.get(f"/api/v1/certificates/{cid}"))
    revoke = f"/api/v1/certificates/{cid}/revoke"
    check("post", revoke, c.post(revoke, {"reason": ""}, content_type="application/json"))  # 400
    check("post", revoke, c.post(revoke, {"reason": "录入错误"}, content_type="application/json"))
    anon = Client()
    check("get", "/api/v1/public/keys", anon.get("/api/v1/public/keys"))
    check("get", "/api/v1/public/certificates/revoked", anon.get("/api/v1/public/certificates/revoked"))
    verify = "/api/v1/public/certificates/verify"
    out = check("post", verify, anon.post(verify, {"payload": body["payload"]}, content_type="application/json"))
    assert out["reason"] == "revoked" and out["certificate"]["revoked_at"]
