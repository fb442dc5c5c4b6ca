"""Certificate signatures (SM2/SM3 and Ed25519) and the JL1 QR payload: pure, no database.

SM2 is checked against the standard's own examples (GB/T 32918.2-2016 Annex A on its test curve, the
GB/T 32918.5 / GM/T 0003.5 example on the recommended curve) and against OpenSSL, an independent
implementation, in both directions.
"""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import cbor2
import gmalg
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from gmalg import ellipticcurve as ec
from gmalg.sm2 import SM2Core

from jiliang.engine import signing as s

USCC = "91440304MA5F3K2X1A"
CLAIMS = s.CertificateClaims(
    number="JL-MA5F3K2X1-2026-000001", issuer=USCC, kind="C", device_id="WM-000123", instrument_type="water_meter",
    serial="S-2026-0001234", date="2026-03-01", valid_until="2032-02-29", conclusion="pass", accuracy_class="2",
    issued_at=1795000000)


@pytest.fixture(scope="module", params=[s.SM2, s.ED25519])
def key(request: pytest.FixtureRequest) -> s.KeyPair:
    return s.generate_key(request.param)


def published(key: s.KeyPair, issuer: str = USCC) -> dict[str, s.PublishedKey]:
    return {key.kid: s.PublishedKey(key.kid, key.algorithm, key.public_key, issuer)}


# ------------------------------------------------------------------------------------------ standard vectors

def h(text: str) -> int:
    return int(text.replace(" ", ""), 16)


def test_sm2_gbt32918_annex_a_example_on_its_test_curve() -> None:
    """GB/T 32918.2-2016 Annex A.2 (GM/T 0003.2): ID ALICE123@YAHOO.COM, message "message digest"."""
    curve = ec.ECDLP(
        h("8542D69E 4C044F18 E8B92435 BF6FF7DE 45728391 5C45517D 722EDB8B 08F1DFC3"),
        h("787968B4 FA32C3FD 2417842E 73BBFEFF 2F3C848B 6831D7E0 EC65228B 3937E498"),
        h("63E4C6D3 B23B0C84 9CF84241 484BFE48 F61D59A5 B16BA06E 6E12D1DA 27C5249A"),
        (h("421DEBD6 1B62EAB6 746434EB C3CC315E 32220B3B ADD50BDC 4C4E6C14 7FEDD43D"),
         h("0680512B CBB42C07 D47349D2 153B70C4 E5D7FDFC BFA36EA1 A85841B9 E46E09A2")),
        h("8542D69E 4C044F18 E8B92435 BF6FF7DD 29772063 0485628D 5AE74EE7 C32E79B7"),
    )
    k = h("6CB28D99 385C175C 94F94E93 4817663F C176D925 DD72B727 260DBAAE 1FB2F96F")
    core = SM2Core(curve, gmalg.SM3(), lambda _bits: k)
    d = h("128B2FA8 BD433C6C 068C8D80 3DFF7979 2A519A55 171B1B65 0C23661D 15897263")
    pub = core.generate_pk(d)
    assert pub == (h("0AE4C779 8AA0F119 471BEE11 825BE462 02BB79E2 A5844495 E97C04FF 4DF2548A"),
                   h("7C0240F8 8F1CD4E1 6352A73C 17B7F16F 07353E53 A176D684 A9FE0C6B B798E857"))
    assert core.entity_info(b"ALICE123@YAHOO.COM", pub) == bytes.fromhex(
        "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A")
    r, sig_s = core.sign(b"message digest", d, b"ALICE123@YAHOO.COM", pub)
    assert r == h("40F1EC59 F793D9F4 9E09DCEF 49130D41 94F79FB1 EED2CAA5 5BACDB49 C4E755D1")
    assert sig_s == h("6FC6DAC3 2C5D5CF1 0C77DFB2 0F7C2EB6 67A45787 2FB09EC5 6327A67E C7DEEBE7")


# GB/T 32918.5-2017 (GM/T 0003.5) example on the recommended curve with the default ID 1234567812345678.
STD_D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
STD_PUB = bytes.fromhex("04" "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
                        "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
STD_SIG = bytes.fromhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
                        "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")


def test_sm2_recommended_curve_example_verifies_with_our_wrapper() -> None:
    assert s.public_key_of(s.SM2, STD_D) == STD_PUB
    assert s.verify(s.SM2, STD_PUB, b"message digest", STD_SIG)
    assert not s.verify(s.SM2, STD_PUB, b"message digest.", STD_SIG)
    k = h("59276E27 D506861A 16680F3A D9C02DCC EF3CC1FA 3CDBE4CE 6D54B80D EAC1BC21")
    r, sig_s = gmalg.SM2(STD_D, s.DEFAULT_SM2_ID, STD_PUB, rnd_fn=lambda _bits: k).sign(b"message digest")
    assert r + sig_s == STD_SIG


def test_key_id_and_public_key_parsing(key: s.KeyPair) -> None:
    assert len(key.kid) == 16 and key.kid == s.key_id(key.algorithm, key.public_key)
    assert s.parse_public_key(key.algorithm, key.public_key_hex) == key.public_key
    assert s.public_key_of(key.algorithm, key.private_key) == key.public_key
    assert key.private_key.hex() not in repr(key)


def test_an_sm2_point_off_the_curve_is_refused() -> None:
    bad = bytearray(STD_PUB)
    bad[-1] ^= 1
    with pytest.raises(s.SigningError, match="curve"):
        s.parse_public_key(s.SM2, bytes(bad).hex())
    with pytest.raises(s.SigningError):
        s.parse_public_key(s.ED25519, "abcd")
    with pytest.raises(s.SigningError):
        s.generate_key("rsa")


# -------------------------------------------------------------------------------------------- OpenSSL check

def _openssl_sm2() -> bool:
    exe = shutil.which("openssl")
    if exe is None:
        return False
    out = subprocess.run([exe, "list", "-public-key-algorithms"], capture_output=True, text=True, check=False)
    return "SM2" in out.stdout


needs_openssl = pytest.mark.skipif(not _openssl_sm2(), reason="openssl with SM2 is not installed")
OPENSSL_SM3 = ["-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"]


@needs_openssl
def test_openssl_verifies_our_sm2_signature(tmp_path: Path) -> None:
    pair = s.generate_key(s.SM2)
    msg = s.sig_structure(b"\xa1\x01\x67SM2-SM3", b"certificate body")
    sig = s.sign(s.SM2, pair.private_key, msg)
    (tmp_path / "pub.pem").write_text(s.public_key_pem(s.SM2, pair.public_key))
    (tmp_path / "msg").write_bytes(msg)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    (tmp_path / "sig").write_bytes(der)
    cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", *OPENSSL_SM3, "-in", "msg",
           "-sigfile", "sig"]
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "Verified Successfully" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "msg").write_bytes(msg + b"x")
    bad = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode != 0


@needs_openssl
def test_we_verify_an_openssl_sm2_signature(tmp_path: Path) -> None:
    def run(*args: str) -> bytes:
        return subprocess.run(["openssl", *args], cwd=tmp_path, capture_output=True, check=True).stdout

    run("genpkey", "-algorithm", "SM2", "-out", "key.pem")
    public = run("pkey", "-in", "key.pem", "-pubout", "-outform", "DER")[-65:]
    msg = b"JL1 interop \xe6\xa3\x80\xe5\xae\x9a\xe8\xaf\x81\xe4\xb9\xa6"
    (tmp_path / "msg").write_bytes(msg)
    run("pkeyutl", "-sign", "-inkey", "key.pem", *OPENSSL_SM3, "-in", "msg", "-out", "sig")
    r, sig_s = decode_dss_signature((tmp_path / "sig").read_bytes())
    raw = r.to_bytes(32, "big") + sig_s.to_bytes(32, "big")
    assert s.verify(s.SM2, s.parse_public_key(s.SM2, public.hex()), msg, raw)
    assert not s.verify(s.SM2, public, msg + b"!", raw)


# ------------------------------------------------------------------------------------------------- Base45

@pytest.mark.parametrize(("raw", "text"), [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
                                           (b"ietf!", "QED8WEX0"), (b"", "")])
def test_base45_rfc9285_examples(raw: bytes, text: str) -> None:
    assert s.b45encode(raw) == text
    assert s.b45decode(text) == raw


@pytest.mark.parametrize("bad", ["GGW", "A", "abc", "ZZZZ"])
def test_base45_refuses_what_no_encoder_makes(bad: str) -> None:
    with pytest.raises(ValueError):
        s.b45decode(bad)


# ------------------------------------------------------------------------------------------------ payloads

def test_payload_round_trip(key: s.KeyPair) -> None:
    text = s.encode_payload(CLAIMS, key)
    assert text.startswith("JL1:") and len(text) < 500  # QR version ≤ 12 at level M: readable on a phone
    assert set(text[4:]) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    check = s.verify_payload(text, published(key))
    assert check.valid and check.reason == "ok" and check.payload is not None
    assert check.payload.claims == CLAIMS
    assert check.payload.algorithm == key.algorithm and check.payload.kid == key.kid


def test_result_notice_carries_no_validity(key: s.KeyPair) -> None:
    notice = s.CertificateClaims(number="JL-X-2026-000002", issuer=USCC, kind="N", device_id="SC-1",
                                 instrument_type="scale", serial="S1", date="2026-03-01", conclusion="fail")
    decoded = s.decode_payload(s.encode_payload(notice, key))
    assert decoded.claims.valid_until is None and "vu" not in cbor2.loads(decoded.body)


def test_every_altered_character_fails(key: s.KeyPair) -> None:
    text = s.encode_payload(CLAIMS, key)
    keys = published(key)
    # Ed25519 is fast enough to try every position; SM2 (pure Python) a spread of them.
    positions = range(4, len(text)) if key.algorithm == s.ED25519 else range(4, len(text), 9)
    signed = zlib.decompress(s.b45decode(text[4:]))
    for i in positions:
        other = "A" if text[i] != "A" else "B"
        altered = text[:i] + other + text[i + 1:]
        check = s.verify_payload(altered, keys)
        if check.valid:
            # Only a change to the deflate stream's unused padding bits can survive, and then the signed COSE
            # structure is byte for byte the original: the transport encoding is malleable, the content is not.
            assert zlib.decompress(s.b45decode(altered[4:])) == signed, (i, check)
            continue
        assert check.reason in ("malformed", "bad_signature", "unknown_key"), (i, check)


def test_one_altered_byte_of_the_signed_data_fails(key: s.KeyPair) -> None:
    """Re-encode after flipping one byte inside the COSE structure, so that decoding succeeds and only the
    signature can catch it."""
    text = s.encode_payload(CLAIMS, key)
    cose = cbor2.loads(zlib.decompress(s.b45decode(text[4:])))
    protected, unprotected, body, sig = cose.value
    for target in ("body", "sig"):
        for i in range(0, len(body if target == "body" else sig), 7):
            b, g = bytearray(body), bytearray(sig)
            if target == "body":
                b[i] ^= 0x01
            else:
                g[i] ^= 0x01
            forged = cbor2.dumps(cbor2.CBORTag(18, [protected, dict(unprotected), bytes(b), bytes(g)]))
            check = s.verify_payload("JL1:" + s.b45encode(zlib.compress(forged)), published(key))
            assert not check.valid and check.reason in ("bad_signature", "malformed"), (target, i, check)
            if key.algorithm == s.SM2:
                break  # one flip each is enough for the slow pure-Python curve


def test_unknown_key_wrong_issuer_and_wrong_algorithm(key: s.KeyPair) -> None:
    text = s.encode_payload(CLAIMS, key)
    assert s.verify_payload(text, {}).reason == "unknown_key"
    assert s.verify_payload(text, published(key, issuer="91440305000000000X")).reason == "issuer_mismatch"
    other_alg = s.ED25519 if key.algorithm == s.SM2 else s.SM2
    wrong = {key.kid: s.PublishedKey(key.kid, other_alg, key.public_key, USCC)}
    assert s.verify_payload(text, wrong).reason == "algorithm_mismatch"
    stranger = s.generate_key(key.algorithm)
    impostor = {key.kid: s.PublishedKey(key.kid, key.algorithm, stranger.public_key, USCC)}
    assert s.verify_payload(text, impostor).reason == "bad_signature"


@pytest.mark.parametrize(("text", "reason"), [
    ("", "malformed"), ("hello", "malformed"), ("HC1:6BFOXN", "malformed"), ("JL9:ABC", "unsupported_version"),
    ("JL1:", "malformed"), ("JL1:%%%", "malformed"), ("JL1:" + "A" * 5000, "malformed"),
    ("JL1:" + s.b45encode(zlib.compress(cbor2.dumps([1, 2, 3]))), "malformed"),
])
def test_bad_input_gives_a_reason_never_an_exception(text: str, reason: str) -> None:
    check = s.verify_payload(text, {})
    assert not check.valid and check.reason == reason and check.detail


def test_a_zlib_bomb_is_refused() -> None:
    bomb = "JL1:" + s.b45encode(zlib.compress(b"\0" * 1_000_000, 9))
    assert s.verify_payload(bomb, {}).reason == "malformed"


# ------------------------------------------------------------------------------------- private keys at rest

def test_sealed_private_key_round_trip_and_binding() -> None:
    pair = s.generate_key(s.SM2)
    sealed = s.seal_private_key(b"deployment secret", pair.private_key, kid=pair.kid)
    assert sealed.startswith("v1:") and pair.private_key.hex() not in sealed
    assert s.unseal_private_key(b"deployment secret", sealed, kid=pair.kid) == pair.private_key
    with pytest.raises(s.SigningError):
        s.unseal_private_key(b"another secret", sealed, kid=pair.kid)
    with pytest.raises(s.SigningError):
        s.unseal_private_key(b"deployment secret", sealed, kid="0" * 16)
    with pytest.raises(s.SigningError):
        s.unseal_private_key(b"deployment secret", "v0:" + sealed[3:], kid=pair.kid)
