"""Verifiable random draws for "double random, one public" inspections (双随机、一公开).

Protocol ``jiliang-draw-v1`` (docs/draw.md says the same for people writing their own checker):

1. **Freeze the frame**: the entities that may be drawn, each ``{"id", "grade", "weight"}``.  Its canonical
   bytes are the entities sorted by id, one JSON object per line with sorted keys, no spaces, UTF-8;
   ``frame_hash = SHA-256(canonical bytes)``.
2. **Commit** before drawing: publish ``frame_hash``, ``seed_commitment = SHA-256(secret)`` (32 random
   bytes kept private), the shares per grade and the algorithm name.
3. **Fix the beacon**: a value that nobody knew at commitment time (an external randomness beacon entered
   by the regulator, or the hash of the day's published records).
4. **Draw**: ``seed = SHA-256(secret ‖ beacon ‖ frame_hash)``.  Each entity gets
   ``u = (int(HMAC-SHA256(seed, id)) + 0.5) / 2**256`` and key ``ln(u) / weight`` (Efraimidis–Spirakis
   weighted sampling without replacement); within each grade the ``k = ceil(share × n)`` entities with
   the largest keys are drawn (ties by id).
5. **Publish** the secret, the beacon, the frame and the targets: anyone can recompute every step.

>>> frame = [{"id": f"E{i}", "grade": "C", "weight": 1.0} for i in range(10)]
>>> c = commit(frame=frame, shares={"C": 0.3}, secret=bytes(32))
>>> r = draw(frame=frame, shares={"C": 0.3}, secret=bytes(32), beacon="2026-11-23 beacon")
>>> len(r.selected), verify(bundle(commitment=c, result=r, frame=frame, secret=bytes(32))).ok
(3, True)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALGORITHM = "jiliang-draw-v1"
GRADES = ("A", "B", "C", "D")
# Default shares per grade from a published county scheme (A ≤ 5 %, B 5–20 %, C 21–60 %, D 61–100 %):
# the upper end of each band.  Plans set their own; these are only defaults.
DEFAULT_SHARES = {"A": 0.05, "B": 0.20, "C": 0.60, "D": 1.00}


class DrawError(ValueError):
    pass


_PLAIN_ID = re.compile(r"[0-9A-Za-z._:\-]+")


def _json_str(text: str) -> str:
    """``json.dumps(text, ensure_ascii=False)``, without the call for the usual plain ids."""
    return f'"{text}"' if _PLAIN_ID.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def _frame_rows(frame: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, float]]:
    """The validated frame as (id, grade, weight), sorted by id."""
    seen: set[str] = set()
    rows: list[tuple[str, str, float]] = []
    for e in frame:
        eid = e.get("id")
        if not isinstance(eid, str) or not eid:
            raise DrawError(f"every entity needs a non-empty string id, got {eid!r}")
        if eid in seen:
            raise DrawError(f"entity {eid!r} appears twice in the frame")
        seen.add(eid)
        grade = e.get("grade")
        if grade not in GRADES:
            raise DrawError(f"entity {eid!r}: grade must be one of {', '.join(GRADES)}, got {grade!r}")
        weight = float(e.get("weight", 1.0))
        if not (weight > 0 and math.isfinite(weight)):
            raise DrawError(f"entity {eid!r}: weight must be a positive number")
        rows.append((eid, grade, weight))
    rows.sort()
    return rows


def _canonical(rows: list[tuple[str, str, float]]) -> bytes:
    # Exactly json.dumps({"grade", "id", "weight"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False):
    # the grade is a plain letter and a float's JSON text is its repr().
    return "".join([f'{{"grade":"{g}","id":{_json_str(eid)},"weight":{w!r}}}\n' for eid, g, w in rows]).encode()


def canonical_frame(frame: Sequence[Mapping[str, Any]]) -> bytes:
    """The frame's canonical bytes: sorted by id, one JSON object per line, sorted keys, no spaces, UTF-8."""
    return _canonical(_frame_rows(frame))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shares(shares: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for g, s in shares.items():
        if g not in GRADES:
            raise DrawError(f"unknown grade {g!r} in shares")
        if not 0.0 <= float(s) <= 1.0:
            raise DrawError(f"share for grade {g} must lie between 0 and 1")
        out[g] = float(s)
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Commitment:
    algorithm: str
    frame_hash: str
    frame_size: int
    seed_commitment: str
    shares: dict[str, float]

    @property
    def digest(self) -> str:
        return sha256_hex(json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode())

    def as_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "frame_hash": self.frame_hash, "frame_size": self.frame_size,
                "seed_commitment": self.seed_commitment, "shares": self.shares}


def commit(*, frame: Sequence[Mapping[str, Any]], shares: Mapping[str, float], secret: bytes) -> Commitment:
    if len(secret) < 16:
        raise DrawError("the secret must have at least 16 bytes")
    canon = canonical_frame(frame)
    return Commitment(ALGORITHM, sha256_hex(canon), canon.count(b"\n"), sha256_hex(secret), _shares(shares))


@dataclass(frozen=True)
class DrawResult:
    beacon: str
    seed_hex: str
    selected: list[str]
    by_grade: dict[str, list[str]] = field(default_factory=dict)


def _keys(seed: bytes, rows: list[tuple[str, str, float]]) -> list[float]:
    """Each row's key ``ln(u) / weight`` with ``u = (int(HMAC-SHA256(seed, id)) + 0.5) / 2**256``; the HMAC
    comes from precomputed inner and outer hash states (RFC 2104), the same digests as ``hmac.new`` at a
    fraction of the cost per entity."""
    assert len(seed) <= 64, "a longer HMAC key would be hashed first"
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in seed.ljust(64, b"\0")))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in seed.ljust(64, b"\0")))
    log, scale, out = math.log, 2**256, []
    for eid, _, weight in rows:
        h = inner.copy()
        h.update(eid.encode())
        o = outer.copy()
        o.update(h.digest())
        out.append(log((int.from_bytes(o.digest(), "big") + 0.5) / scale) / weight)
    return out


def draw(*, frame: Sequence[Mapping[str, Any]], shares: Mapping[str, float], secret: bytes,
         beacon: str) -> DrawResult:
    if not beacon:
        raise DrawError("the beacon value is required (fixed after the commitment)")
    rows = _frame_rows(frame)
    canon = _canonical(rows)
    seed = hashlib.sha256(secret + beacon.encode() + bytes.fromhex(sha256_hex(canon))).digest()
    sh = _shares(shares)
    # (-key, id): a plain ascending sort puts the largest keys first, ties by id.
    groups: dict[str, list[tuple[float, str]]] = {g: [] for g in GRADES}
    for key, (eid, grade, _) in zip(_keys(seed, rows), rows, strict=True):
        groups[grade].append((-key, eid))
    by_grade: dict[str, list[str]] = {}
    for g, members in groups.items():
        k = math.ceil(sh.get(g, 0.0) * len(members) - 1e-12)
        members.sort()
        by_grade[g] = sorted(eid for _, eid in members[:k])
    selected = sorted(eid for ids in by_grade.values() for eid in ids)
    return DrawResult(beacon, seed.hex(), selected, by_grade)


def bundle(*, commitment: Commitment, result: DrawResult, frame: Sequence[Mapping[str, Any]], secret: bytes,
           plan: str = "") -> dict[str, Any]:
    """What is published after the draw: enough for anyone to check it offline."""
    return {"plan": plan, "commitment": commitment.as_dict(), "commitment_digest": commitment.digest,
            "secret_hex": secret.hex(), "beacon": result.beacon,
            "frame": [json.loads(line) for line in canonical_frame(frame).splitlines()],
            "selected": result.selected}


@dataclass(frozen=True)
class Verification:
    ok: bool
    problems: list[str]


def verify(published: Mapping[str, Any]) -> Verification:
    """Recompute a published draw from its bundle alone."""
    problems: list[str] = []
    try:
        frame = published["frame"]
        c = published["commitment"]
        secret = bytes.fromhex(published["secret_hex"])
        beacon = str(published["beacon"])
        selected = list(published["selected"])
    except (KeyError, TypeError, ValueError) as exc:
        return Verification(False, [f"the bundle is incomplete or malformed: {exc}"])
    if c.get("algorithm") != ALGORITHM:
        problems.append(f"unknown algorithm {c.get('algorithm')!r}")
    try:
        again = commit(frame=frame, shares=c["shares"], secret=secret)
    except DrawError as exc:
        return Verification(False, [str(exc)])
    if again.frame_hash != c["frame_hash"]:
        problems.append("the frame does not match the committed frame hash")
    if again.seed_commitment != c["seed_commitment"]:
        problems.append("the secret does not match the committed seed commitment")
    if published.get("commitment_digest") and again.digest != published["commitment_digest"]:
        problems.append("the commitment digest does not match")
    result = draw(frame=frame, shares=c["shares"], secret=secret, beacon=beacon)
    if result.selected != sorted(selected):
        problems.append("re-drawing gives different targets")
    return Verification(not problems, problems)
