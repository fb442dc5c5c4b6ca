"""OCMF signed meter values (Open Charge Metering Format, 充电桩电能计量签名数据) checked against a key.

An OCMF string is ``OCMF|<payload JSON>|<signature JSON>``; the signature (``SD``, DER-encoded ECDSA) is over
the payload bytes exactly as they appear, with the algorithm ``SA`` (default ``ECDSA-secp256r1-SHA256``).
Verification uses **pyocmf**.  For curves its cryptography backend lacks but the OCMF specification lists
(secp192k1, secp192r1), a small pure-Python ECDSA verifier with the curves' published parameters (SEC 2)
takes over; the key's curve must match the algorithm's.

>>> verify_ocmf("OCMF|{}|{}", "00").valid
False
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

# SEC 2 v2 domain parameters (p, a, b, Gx, Gy, n) for the curves pyocmf cannot load.
CURVES: dict[str, tuple[int, int, int, int, int, int]] = {
    "secp192k1": (0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFEE37, 0, 3,
                  0xDB4FF10EC057E9AE26B07D0280B7F4341DA5D1B1EAE06C7D,
                  0x9B2F2F6D9C5628A7844163D015BE86344082AA88D95E2F9D,
                  0xFFFFFFFFFFFFFFFFFFFFFFFE26F2FC170F69466A74DEFD8D),
    "secp192r1": (0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFFFFFFFFFF, -3,
                  0x64210519E59C80E70FA7E9AB72243049FEB8DEECC146B9B1,
                  0x188DA80EB03090F67CBF20EB43A18800F4FF0AFD82FF1012,
                  0x07192B95FFC8DA78631011ED6B24CDD573F977A11E794811,
                  0xFFFFFFFFFFFFFFFFFFFFFFFF99DEF836146BC9B1B4D22831),
}
CURVE_OIDS = {"1.3.132.0.31": "secp192k1", "1.2.840.10045.3.1.1": "secp192r1"}


@dataclass(frozen=True)
class OcmfResult:
    valid: bool
    reason: str = ""
    algorithm: str = ""
    readings: list[dict[str, Any]] = field(default_factory=list)


def _key_bytes(public_key: str) -> bytes:
    text = public_key.strip()
    compact = re.sub(r"\s+", "", text)
    if re.fullmatch(r"[0-9a-fA-F]+", compact) and len(compact) % 2 == 0:
        return bytes.fromhex(compact)
    return base64.b64decode(compact)


def _der(data: bytes, pos: int) -> tuple[int, bytes, int]:
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    return tag, data[pos : pos + length], pos + length


def _oid(raw: bytes) -> str:
    first = raw[0]
    parts = [first // 40, first % 40]
    value = 0
    for b in raw[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _spki(key: bytes) -> tuple[str, bytes]:
    """(curve OID, uncompressed point) from a DER SubjectPublicKeyInfo."""
    _t, spki, _ = _der(key, 0)
    _t, algo, pos = _der(spki, 0)
    _t, bits, _ = _der(spki, pos)
    _t, _ec_oid, apos = _der(algo, 0)
    _t, curve_oid, _ = _der(algo, apos)
    return _oid(curve_oid), bits[1:]  # skip the unused-bits byte


def _point_add(p: tuple[int, int] | None, q: tuple[int, int] | None, a: int, mod: int) -> tuple[int, int] | None:
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % mod == 0:
        return None
    if p == q:
        lam = (3 * p[0] * p[0] + a) * pow(2 * p[1], -1, mod) % mod
    else:
        lam = (q[1] - p[1]) * pow(q[0] - p[0], -1, mod) % mod
    x = (lam * lam - p[0] - q[0]) % mod
    return x, (lam * (p[0] - x) - p[1]) % mod


def _mul(k: int, p: tuple[int, int], a: int, mod: int) -> tuple[int, int] | None:
    out: tuple[int, int] | None = None
    addend: tuple[int, int] | None = p
    while k:
        if k & 1:
            out = _point_add(out, addend, a, mod)
        addend = _point_add(addend, addend, a, mod)
        k >>= 1
    return out


def _ecdsa_verify(curve: str, point: bytes, message: bytes, der_sig: bytes) -> bool:
    p, a, b, gx, gy, n = CURVES[curve]
    size = (p.bit_length() + 7) // 8
    if point[0] != 4 or len(point) != 1 + 2 * size:
        return False
    q = (int.from_bytes(point[1 : 1 + size], "big"), int.from_bytes(point[1 + size :], "big"))
    if (q[1] * q[1] - (q[0] ** 3 + a * q[0] + b)) % p:
        return False  # not on the curve
    _t, seq, _ = _der(der_sig, 0)
    _t, r_raw, pos = _der(seq, 0)
    _t, s_raw, _ = _der(seq, pos)
    r, s = int.from_bytes(r_raw, "big"), int.from_bytes(s_raw, "big")
    if not (0 < r < n and 0 < s < n):
        return False
    digest = hashlib.sha256(message).digest()
    e = int.from_bytes(digest, "big") >> max(0, len(digest) * 8 - n.bit_length())
    w = pow(s, -1, n)
    x = _point_add(_mul(e * w % n, (gx, gy), a, p), _mul(r * w % n, q, a, p), a, p)
    return x is not None and x[0] % n == r


def _split(ocmf: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    if not ocmf.startswith("OCMF|") or ocmf.count("|") < 2:
        raise ValueError("not an OCMF string (OCMF|payload|signature)")
    body, _, sig = ocmf[5:].rpartition("|")
    return body, orjson.loads(body), orjson.loads(sig)


def verify_ocmf(ocmf: str, public_key: str) -> OcmfResult:
    """Check one OCMF string against a public key (hex — spaces allowed — or base64 DER)."""
    try:
        payload_text, payload, sig = _split(ocmf.strip())
        key = _key_bytes(public_key)
    except (ValueError, orjson.JSONDecodeError) as exc:
        return OcmfResult(False, f"malformed OCMF or key: {exc}")
    algorithm = str(sig.get("SA") or "ECDSA-secp256r1-SHA256")
    readings = list(payload.get("RD") or [])
    from pyocmf import OCMF
    from pyocmf.exceptions import PyOCMFError

    try:
        ok = OCMF.from_string(ocmf.strip()).verify_signature(key.hex())
        return OcmfResult(bool(ok), "" if ok else "signature does not match the signed data", algorithm, readings)
    except PyOCMFError as exc:
        message = str(exc)
        if "Unsupported elliptic curve" not in message:
            return OcmfResult(False, message, algorithm, readings)
    try:  # a curve pyocmf's backend lacks
        oid, point = _spki(key)
    except (IndexError, ValueError) as exc:
        return OcmfResult(False, f"cannot read the public key: {exc}", algorithm, readings)
    curve = CURVE_OIDS.get(oid)
    if curve is None:
        return OcmfResult(False, f"unsupported curve {oid}", algorithm, readings)
    if curve not in algorithm or not algorithm.endswith("SHA256"):
        return OcmfResult(False, f"the key is on {curve} but the algorithm is {algorithm}", algorithm, readings)
    try:
        ok = _ecdsa_verify(curve, point, payload_text.encode(), bytes.fromhex(str(sig.get("SD", ""))))
    except (IndexError, ValueError) as exc:
        return OcmfResult(False, f"malformed signature: {exc}", algorithm, readings)
    return OcmfResult(ok, "" if ok else "signature does not match the signed data", algorithm, readings)
