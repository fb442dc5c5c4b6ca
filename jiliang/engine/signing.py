"""Signed certificate payloads (电子证书签名与二维码): SM2 with SM3 by default, Ed25519 as an option.

Pure Python, no Django: the issuing service, ``jiliang cert verify`` and any third-party checker use the
same functions.  The QR format follows the EU digital COVID certificate (HC1: CBOR/COSE, zlib, Base45)
and is versioned by its prefix.  ADR 0006 records why.

Format ``JL1``
--------------
``JL1:`` + Base45(zlib(COSE_Sign1)), where

* **COSE_Sign1** (RFC 9052 §4.2, CBOR tag 18) is the array
  ``[protected: bstr, unprotected: {}, payload: bstr, signature: bstr]``;
* **protected** is the CBOR map ``{1: alg, 4: kid}``: ``alg`` is ``"SM2-SM3"`` (SM2 signature with the
  SM3 hash, GB/T 32918.2 / GM/T 0003.2; text, because COSE has no registered number for it) or ``-8``
  (COSE's EdDSA, used with Ed25519); ``kid`` is 8 bytes: the first 8 bytes of
  SHA-256(``algorithm name`` ‖ ``":"`` ‖ raw public key);
* **payload** is the CBOR map of the certificate's key data (证书关键信息), text keys:

  ====  =================================================  ==========================
  key   meaning                                            example
  ====  =================================================  ==========================
  no    certificate number (证书编号)                       ``JL-MA5F3K2X1-2026-000001``
  iss   issuing institution's credit code (发证机构)        18-character USCC
  k     ``C`` certificate (检定证书) / ``N`` result notice   ``C``
        (检定结果通知书)
  dev   instrument's device_id (器具编号)                   ``SC-F-1``
  typ   instrument type key (器具类型)                      ``scale``
  sn    serial number (出厂编号)                            ``S-SC-F-1``
  cls   accuracy class (准确度等级), may be absent          ``III``
  d     verification date (检定日期), ISO 8601              ``2026-03-01``
  vu    valid until (有效期至), absent on a result notice   ``2027-02-28``
  r     conclusion (检定结论): ``pass`` / ``fail``           ``pass``
  iat   issued at, seconds since the Unix epoch            ``1795000000``
  ====  =================================================  ==========================

* **signature** is over COSE's ``Sig_structure1``, the CBOR array
  ``["Signature1", protected, h'', payload]``.  SM2: the 64 bytes ``r ‖ s`` (each 32 bytes big-endian,
  not DER), with ``Z_A`` computed from the default signer ID ``1234567812345678`` (GB/T 35276).
  Ed25519: the 64-byte RFC 8032 signature.

Verification needs only the payload and the issuer's published key (kid → algorithm, public key,
issuer credit code): it decodes, finds the key by kid, checks the algorithm, the signature and that the
key belongs to the issuer named in the payload.  Revocation is a separate list the online services check.

>>> key = generate_key(ED25519)
>>> claims = CertificateClaims(number="JL-1-2026-000001", issuer="91440300MA5F3K2X1A", kind="C",
...     device_id="SC-1", instrument_type="scale", serial="S1", date="2026-03-01",
...     valid_until="2027-02-28", conclusion="pass")
>>> text = encode_payload(claims, key)
>>> text.startswith("JL1:")
True
>>> keys = {key.kid: PublishedKey(key.kid, ED25519, key.public_key, "91440300MA5F3K2X1A")}
>>> check = verify_payload(text, keys)
>>> check.valid, check.reason, check.payload.claims.number if check.payload else None
(True, 'ok', 'JL-1-2026-000001')
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
import gmalg
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SM2 = "sm2"
ED25519 = "ed25519"
ALGORITHMS = (SM2, ED25519)
# GB/T 35276-2017 §5: the signer ID when none is agreed; every mainstream SM2 implementation defaults to it.
DEFAULT_SM2_ID = b"1234567812345678"
PREFIX = "JL1:"
VERSION = 1
_COSE_ALG = {SM2: "SM2-SM3", ED25519: -8}
_ALG_FROM_COSE: dict[Any, str] = {v: k for k, v in _COSE_ALG.items()}
_COSE_SIGN1_TAG = 18
_KID_BYTES = 8
_SIG_BYTES = 64
_MAX_TEXT = 4096        # a QR code holds at most 4296 alphanumeric characters
_MAX_INFLATED = 8192    # refuse zlib bombs
_CLAIM_KEYS = ("no", "iss", "k", "dev", "typ", "sn", "cls", "d", "vu", "r", "iat")
_REQUIRED_CLAIMS = ("no", "iss", "k", "dev", "typ", "sn", "d", "r")

# Why a check failed (stable codes: the API and the CLI return them).
REASONS = {
    "ok": "签名有效",
    "malformed": "不是有效的证书二维码内容（格式错误或内容被改动）",
    "unsupported_version": "不支持的二维码版本",
    "unknown_key": "找不到签发机构的公钥（密钥标识未公布）",
    "algorithm_mismatch": "签名算法与公布的密钥不符",
    "bad_signature": "签名验证失败：内容被改动或不是该机构签发",
    "issuer_mismatch": "签名密钥不属于证书上的发证机构",
}


class SigningError(ValueError):
    """A key or algorithm that cannot be used (wrong length, not on the curve, unknown algorithm)."""


class PayloadError(ValueError):
    """A payload that cannot be decoded.  ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# ------------------------------------------------------------------------------------------------- keys

@dataclass(frozen=True)
class KeyPair:
    """An institution's signing key (机构签名密钥).  ``private_key`` is 32 raw bytes for both algorithms;
    ``public_key`` is 65 bytes ``04 ‖ x ‖ y`` for SM2, 32 bytes for Ed25519."""

    algorithm: str
    private_key: bytes
    public_key: bytes

    @property
    def kid(self) -> str:
        return key_id(self.algorithm, self.public_key)

    @property
    def public_key_hex(self) -> str:
        return self.public_key.hex()

    def __repr__(self) -> str:  # never print the private key
        return f"KeyPair(algorithm={self.algorithm!r}, kid={self.kid!r})"


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise SigningError(f"unknown signature algorithm {algorithm!r} (use {' or '.join(ALGORITHMS)})")


def generate_key(algorithm: str = SM2) -> KeyPair:
    """A new key pair from the operating system's random source."""
    _check_algorithm(algorithm)
    if algorithm == SM2:
        sk, pk = gmalg.SM2().generate_keypair()
        return KeyPair(SM2, bytes(sk).rjust(32, b"\0"), bytes(pk))
    private = Ed25519PrivateKey.generate()
    return KeyPair(ED25519, private.private_bytes_raw(), private.public_key().public_bytes_raw())


def public_key_of(algorithm: str, private_key: bytes) -> bytes:
    """The public key that belongs to ``private_key``."""
    _check_algorithm(algorithm)
    if len(private_key) != 32:
        raise SigningError("a private key is 32 bytes")
    if algorithm == SM2:
        return bytes(gmalg.SM2().generate_pk(private_key))
    return Ed25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


def key_id(algorithm: str, public_key: bytes) -> str:
    """The key identifier (密钥标识, kid): 16 hex digits of SHA-256(algorithm ‖ ":" ‖ public key)."""
    _check_algorithm(algorithm)
    return hashlib.sha256(algorithm.encode() + b":" + public_key).digest()[:_KID_BYTES].hex()


def parse_public_key(algorithm: str, public_key_hex: str) -> bytes:
    """Raw public key bytes from their published hex form, checked (an SM2 point must lie on the curve)."""
    _check_algorithm(algorithm)
    try:
        raw = bytes.fromhex(public_key_hex.strip())
    except ValueError:
        raise SigningError("the public key is not hexadecimal") from None
    if algorithm == SM2:
        if len(raw) != 65 or raw[0] != 4:
            raise SigningError("an SM2 public key is 65 bytes: 04 ‖ x ‖ y (130 hex digits)")
        if not gmalg.SM2().verify_pk(raw):
            raise SigningError("the SM2 public key is not a point of the curve")
        return raw
    if len(raw) != 32:
        raise SigningError("an Ed25519 public key is 32 bytes (64 hex digits)")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def sign(algorithm: str, private_key: bytes, message: bytes, *, public_key: bytes | None = None) -> bytes:
    """Sign ``message``: 64 bytes (SM2: r ‖ s with SM3 and the default signer ID; Ed25519: RFC 8032)."""
    _check_algorithm(algorithm)
    if len(private_key) != 32:
        raise SigningError("a private key is 32 bytes")
    if algorithm == SM2:
        pk = public_key if public_key is not None else public_key_of(SM2, private_key)
        r, s = gmalg.SM2(private_key, DEFAULT_SM2_ID, pk).sign(message)
        return bytes(r).rjust(32, b"\0") + bytes(s).rjust(32, b"\0")
    return Ed25519PrivateKey.from_private_bytes(private_key).sign(message)


def verify(algorithm: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``message`` signed by the private half of ``public_key``."""
    _check_algorithm(algorithm)
    if len(signature) != _SIG_BYTES:
        return False
    if algorithm == SM2:
        if len(public_key) != 65 or public_key[0] != 4:
            return False
        return bool(gmalg.SM2(None, DEFAULT_SM2_ID, public_key).verify(message, signature[:32], signature[32:]))
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_pem(algorithm: str, public_key: bytes) -> str:
    """SubjectPublicKeyInfo PEM, for tools such as ``openssl pkeyutl -verify`` (SM2 OID 1.2.156.10197.1.301)."""
    _check_algorithm(algorithm)
    if algorithm == ED25519:
        pem = Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return pem.decode()
    # SEQUENCE { SEQUENCE { id-ecPublicKey, sm2 }, BIT STRING 04‖x‖y }
    der = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200") + public_key
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


# -------------------------------------------------------------------------- private keys at rest (AES-GCM)

_SEAL_VERSION = "v1"


def _sealing_key(master_secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"jiliang-key-sealing",
                info=b"institution signing key v1").derive(master_secret)


def seal_private_key(master_secret: bytes, private_key: bytes, *, kid: str) -> str:
    """Encrypt a private key for storage (静态加密): AES-256-GCM under a key derived with HKDF-SHA256 from
    ``master_secret``; the kid is authenticated data, so a sealed key cannot be moved to another row."""
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key(master_secret)).encrypt(nonce, private_key, kid.encode())
    return f"{_SEAL_VERSION}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal_private_key(master_secret: bytes, sealed: str, *, kid: str) -> bytes:
    """The private key back; :class:`SigningError` when the secret or the kid do not match."""
    version, _, body = sealed.partition(":")
    if version != _SEAL_VERSION:
        raise SigningError(f"unknown sealed-key version {version!r}")
    try:
        raw = base64.urlsafe_b64decode(body.encode())
        return AESGCM(_sealing_key(master_secret)).decrypt(raw[:12], raw[12:], kid.encode())
    except (InvalidTag, ValueError):
        raise SigningError("the private key cannot be decrypted with this secret") from None


# ------------------------------------------------------------------------------------ Base45 (RFC 9285)

_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_B45_INDEX = {c: i for i, c in enumerate(_B45)}


def b45encode(data: bytes) -> str:
    """RFC 9285 Base45: the QR alphanumeric alphabet, so the code uses the dense alphanumeric mode.

    >>> b45encode(b"AB"), b45encode(b"Hello!!"), b45encode(b"base-45")
    ('BB8', '%69 VD92EX0', 'UJCLQE7W581')
    """
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        e, rest = divmod(n, 45 * 45)
        d, c = divmod(rest, 45)
        out += [_B45[c], _B45[d], _B45[e]]
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += [_B45[c], _B45[d]]
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Inverse of :func:`b45encode`; ``ValueError`` on a character or group that no encoding produces.

    >>> b45decode("QED8WEX0")
    b'ietf!'
    """
    try:
        values = [_B45_INDEX[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]!r} is not a Base45 character") from None
    if len(values) % 3 == 1:
        raise ValueError("Base45 text has a dangling character")
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i:i + 3]
        if len(group) == 3:
            n = group[0] + group[1] * 45 + group[2] * 45 * 45
            if n > 0xFFFF:
                raise ValueError("Base45 group out of range")
            out += n.to_bytes(2, "big")
        else:
            n = group[0] + group[1] * 45
            if n > 0xFF:
                raise ValueError("Base45 group out of range")
            out.append(n)
    return bytes(out)


# -------------------------------------------------------------------------------------------- payloads

@dataclass(frozen=True)
class CertificateClaims:
    """The certificate's key data carried in the QR code (see the table in the module docstring)."""

    number: str
    issuer: str
    kind: str                 # "C" certificate (检定证书) | "N" result notice (检定结果通知书)
    device_id: str
    instrument_type: str
    serial: str
    date: str                 # ISO 8601 date of the verification
    conclusion: str           # "pass" | "fail"
    valid_until: str | None = None
    accuracy_class: str = ""
    issued_at: int | None = None

    def as_map(self) -> dict[str, Any]:
        m: dict[str, Any] = {"no": self.number, "iss": self.issuer, "k": self.kind, "dev": self.device_id,
                             "typ": self.instrument_type, "sn": self.serial, "d": self.date, "r": self.conclusion}
        if self.accuracy_class:
            m["cls"] = self.accuracy_class
        if self.valid_until:
            m["vu"] = self.valid_until
        if self.issued_at is not None:
            m["iat"] = self.issued_at
        return m

    @classmethod
    def from_map(cls, m: Mapping[Any, Any]) -> CertificateClaims:
        unknown = set(m) - set(_CLAIM_KEYS)
        if unknown:
            raise PayloadError("malformed", f"unknown claims {sorted(map(str, unknown))}")
        missing = [k for k in _REQUIRED_CLAIMS if k not in m]
        if missing:
            raise PayloadError("malformed", f"missing claims {missing}")
        for k in _CLAIM_KEYS:
            if k in m and k != "iat" and not isinstance(m[k], str):
                raise PayloadError("malformed", f"claim {k!r} must be text")
        if "iat" in m and (not isinstance(m["iat"], int) or isinstance(m["iat"], bool)):
            raise PayloadError("malformed", "claim 'iat' must be an integer")
        if m["k"] not in ("C", "N") or m["r"] not in ("pass", "fail"):
            raise PayloadError("malformed", "claims 'k' or 'r' have an unknown value")
        return cls(number=m["no"], issuer=m["iss"], kind=m["k"], device_id=m["dev"], instrument_type=m["typ"],
                   serial=m["sn"], date=m["d"], conclusion=m["r"], valid_until=m.get("vu"),
                   accuracy_class=m.get("cls", ""), issued_at=m.get("iat"))


@dataclass(frozen=True)
class DecodedPayload:
    """A payload taken apart, not yet verified."""

    algorithm: str
    kid: str
    claims: CertificateClaims
    protected: bytes
    body: bytes
    signature: bytes

    @property
    def signed_message(self) -> bytes:
        return sig_structure(self.protected, self.body)


@dataclass(frozen=True)
class PublishedKey:
    """A public key as an institution publishes it: kid, algorithm, raw key, the institution's USCC."""

    kid: str
    algorithm: str
    public_key: bytes
    issuer: str


@dataclass(frozen=True)
class PayloadCheck:
    """The offline verdict: ``valid`` and a stable ``reason`` (a key of :data:`REASONS`)."""

    valid: bool
    reason: str
    detail: str
    payload: DecodedPayload | None = None


def sig_structure(protected: bytes, body: bytes) -> bytes:
    """COSE ``Sig_structure`` for COSE_Sign1 with empty external data: what is actually signed."""
    return bytes(cbor2.dumps(["Signature1", protected, b"", body]))


def encode_payload(claims: CertificateClaims, key: KeyPair) -> str:
    """Sign ``claims`` with ``key`` and return the QR text ``JL1:…``."""
    protected = bytes(cbor2.dumps({1: _COSE_ALG[key.algorithm], 4: bytes.fromhex(key.kid)}))
    body = bytes(cbor2.dumps(claims.as_map(), canonical=True))
    signature = sign(key.algorithm, key.private_key, sig_structure(protected, body), public_key=key.public_key)
    cose = cbor2.dumps(cbor2.CBORTag(_COSE_SIGN1_TAG, [protected, {}, body, signature]))
    return PREFIX + b45encode(zlib.compress(cose, 9))


def decode_payload(text: str) -> DecodedPayload:
    """Take a ``JL1:`` text apart (no signature check).  Raises :class:`PayloadError`."""
    text = text.strip()
    if not text:
        raise PayloadError("malformed", "the payload is empty")
    if len(text) > _MAX_TEXT:
        raise PayloadError("malformed", f"the payload is longer than {_MAX_TEXT} characters")
    head, sep, rest = text.partition(":")
    if not sep or not head.startswith("JL"):
        raise PayloadError("malformed", "a certificate payload starts with JL1:")
    if head != PREFIX[:-1]:
        raise PayloadError("unsupported_version", f"version {head!r} is not supported (this checker reads JL1)")
    try:
        compressed = b45decode(rest)
        inflater = zlib.decompressobj()
        cose_bytes = inflater.decompress(compressed, _MAX_INFLATED)
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            raise ValueError("the compressed data is truncated, too large or followed by extra bytes")
        cose = cbor2.loads(cose_bytes)
    except (ValueError, zlib.error, cbor2.CBORDecodeError) as exc:
        raise PayloadError("malformed", f"cannot decode the payload: {exc}") from None
    if not (isinstance(cose, cbor2.CBORTag) and cose.tag == _COSE_SIGN1_TAG
            and isinstance(cose.value, list | tuple) and len(cose.value) == 4):
        raise PayloadError("malformed", "the payload is not a COSE_Sign1 structure")
    protected, _unprotected, body, signature = cose.value
    if not all(isinstance(x, bytes) for x in (protected, body, signature)):
        raise PayloadError("malformed", "COSE_Sign1 members have the wrong types")
    try:
        header = cbor2.loads(protected)
        claims_map = cbor2.loads(body)
    except (ValueError, cbor2.CBORDecodeError) as exc:
        raise PayloadError("malformed", f"cannot decode the signed data: {exc}") from None
    if not isinstance(header, Mapping) or not isinstance(claims_map, Mapping):
        raise PayloadError("malformed", "the header and the claims must be maps")
    algorithm = _ALG_FROM_COSE.get(header.get(1))
    kid = header.get(4)
    if algorithm is None:
        raise PayloadError("malformed", f"unknown algorithm {header.get(1)!r}")
    if not isinstance(kid, bytes) or len(kid) != _KID_BYTES:
        raise PayloadError("malformed", "the key identifier must be 8 bytes")
    return DecodedPayload(algorithm=algorithm, kid=kid.hex(), claims=CertificateClaims.from_map(claims_map),
                          protected=protected, body=body, signature=signature)


def verify_payload(text: str, keys: Mapping[str, PublishedKey]) -> PayloadCheck:
    """Verify a payload offline against published keys (kid → key).  Never raises on bad input."""
    try:
        decoded = decode_payload(text)
    except PayloadError as exc:
        return PayloadCheck(False, exc.reason, exc.detail)
    key = keys.get(decoded.kid)
    if key is None:
        return PayloadCheck(False, "unknown_key", f"no published key has kid {decoded.kid}", decoded)
    if key.algorithm != decoded.algorithm:
        return PayloadCheck(False, "algorithm_mismatch",
                            f"key {key.kid} is {key.algorithm}, the payload says {decoded.algorithm}", decoded)
    if not verify(key.algorithm, key.public_key, decoded.signed_message, decoded.signature):
        return PayloadCheck(False, "bad_signature", "the signature does not match the signed data", decoded)
    if key.issuer != decoded.claims.issuer:
        return PayloadCheck(False, "issuer_mismatch",
                            f"key {key.kid} belongs to {key.issuer}, not to {decoded.claims.issuer}", decoded)
    return PayloadCheck(True, "ok", REASONS["ok"], decoded)
