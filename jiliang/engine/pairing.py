"""Drawing two inspectors for each inspection task (检查人员随机匹配, the second "random" of 双随机).

Protocol ``jiliang-pairing-v1``, an extension of ``jiliang-draw-v1`` (docs/draw.md §6 says the same for
people writing their own checker).  Inputs, all public after the plan's publication:

- ``seed_hex``: the draw's seed (``SHA-256(secret ‖ beacon ‖ frame_hash)``, docs/draw.md §4);
- ``targets``: the drawn entities' ids, processed in the given order (the plan uses the sorted ``selected``);
- ``inspectors``: the eligible inspectors' opaque ids (order does not matter);
- ``conflicts``: per target, the inspectors who declared a conflict of interest (利益冲突) with it;
- ``previous``: per target, the pair that inspected it last time (never drawn again as the same pair).

For each target in order: the candidates are the inspectors without a declared conflict; each gets the key
``HMAC-SHA256(seed, "pair" 0x00 target 0x00 inspector)`` read as a big-endian integer; candidates are ranked by
(tasks already given in this draw, key, id).  The first-ranked is drawn, then the next-ranked whose pair with
the first is not the target's previous pair.  With fewer than two candidates, or when the only two candidates
are the previous pair, the target stays unassigned with a reason.  Ranking by load first keeps every
inspector's number of tasks within one of the others' when nothing else constrains the draw.

>>> r = pair(seed_hex="00" * 32, targets=["E1", "E2", "E3"], inspectors=["a", "b", "c", "d"])
>>> [a.target for a in r], sorted(r.loads().values())
(['E1', 'E2', 'E3'], [1, 1, 2, 2])
>>> pair(seed_hex="00" * 32, targets=["E1"], inspectors=["a"])[0].reason
'fewer_than_two_eligible'
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ALGORITHM = "jiliang-pairing-v1"

# Why a target could not be given two inspectors (stable codes; pages translate them).
FEWER_THAN_TWO = "fewer_than_two_eligible"
ONLY_PREVIOUS_PAIR = "only_previous_pair_eligible"
REASONS = (FEWER_THAN_TWO, ONLY_PREVIOUS_PAIR)


class PairingError(ValueError):
    pass


@dataclass(frozen=True)
class Assignment:
    """One target's outcome: two inspectors (sorted) or ``None`` with the reason code."""

    target: str
    inspectors: tuple[str, str] | None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "inspectors": list(self.inspectors) if self.inspectors else None,
                "reason": self.reason}


class Pairing(list[Assignment]):
    """The assignments in target order, with each inspector's number of tasks."""

    def loads(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self:
            for i in a.inspectors or ():
                out[i] = out.get(i, 0) + 1
        return out


def _key(seed: bytes, target: str, inspector: str) -> int:
    msg = b"pair\x00" + target.encode() + b"\x00" + inspector.encode()
    return int.from_bytes(hmac.new(seed, msg, hashlib.sha256).digest(), "big")


def _seed(seed_hex: str) -> bytes:
    try:
        seed = bytes.fromhex(seed_hex)
    except ValueError as exc:
        raise PairingError("the seed must be hexadecimal") from exc
    if len(seed) < 16:
        raise PairingError("the seed must have at least 16 bytes")
    return seed


def _ids(values: Iterable[str], what: str) -> list[str]:
    out = []
    for v in values:
        if not isinstance(v, str) or not v:
            raise PairingError(f"every {what} needs a non-empty string id, got {v!r}")
        out.append(v)
    if len(set(out)) != len(out):
        raise PairingError(f"a {what} appears twice")
    return out


def pair(*, seed_hex: str, targets: Sequence[str], inspectors: Iterable[str],
         conflicts: Mapping[str, Iterable[str]] | None = None,
         previous: Mapping[str, Iterable[str]] | None = None) -> Pairing:
    """Two inspectors per target, deterministic from the inputs (see the module docstring)."""
    seed = _seed(seed_hex)
    order = _ids(targets, "target")
    pool = sorted(_ids(inspectors, "inspector"))
    conflicted = {t: set(v) for t, v in (conflicts or {}).items()}
    prev = {t: frozenset(v) for t, v in (previous or {}).items()}
    load = dict.fromkeys(pool, 0)
    out = Pairing()
    for t in order:
        barred = conflicted.get(t, set())
        ranked = sorted((i for i in pool if i not in barred), key=lambda i: (load[i], _key(seed, t, i), i))
        if len(ranked) < 2:
            out.append(Assignment(t, None, FEWER_THAN_TWO))
            continue
        first = ranked[0]
        avoid = prev.get(t, frozenset())
        second = next((i for i in ranked[1:] if frozenset((first, i)) != avoid), None)
        if second is None:  # only possible with exactly two candidates forming the previous pair
            out.append(Assignment(t, None, ONLY_PREVIOUS_PAIR))
            continue
        load[first] += 1
        load[second] += 1
        a, b = sorted((first, second))
        out.append(Assignment(t, (a, b)))
    return out


def pairing_bundle(*, seed_hex: str, targets: Sequence[str], inspectors: Iterable[str],
                   conflicts: Mapping[str, Iterable[str]] | None = None,
                   previous: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """The inputs and the outcome in the published form (lists sorted, so equal inputs give equal JSON)."""
    result = pair(seed_hex=seed_hex, targets=targets, inspectors=inspectors, conflicts=conflicts,
                  previous=previous)
    return {"algorithm": ALGORITHM, "targets": list(targets), "inspectors": sorted(inspectors),
            "conflicts": {t: sorted(v) for t, v in sorted((conflicts or {}).items()) if v},
            "previous": {t: sorted(v) for t, v in sorted((previous or {}).items()) if v},
            "assignments": [a.as_dict() for a in result]}


def verify(bundle: Mapping[str, Any], *, seed_hex: str) -> list[str]:
    """Recompute a published pairing with the draw's seed; the list of problems is empty when it matches."""
    try:
        if bundle.get("algorithm") != ALGORITHM:
            return [f"unknown algorithm {bundle.get('algorithm')!r}"]
        again = pairing_bundle(seed_hex=seed_hex, targets=list(bundle["targets"]),
                               inspectors=list(bundle["inspectors"]), conflicts=dict(bundle.get("conflicts") or {}),
                               previous=dict(bundle.get("previous") or {}))
    except (KeyError, TypeError, PairingError) as exc:
        return [f"the pairing bundle is incomplete or malformed: {exc}"]
    problems = []
    for want, got in zip(again["assignments"], bundle.get("assignments") or [], strict=False):
        if want != got:
            problems.append(f"target {want['target']}: recomputed {want['inspectors']}, "
                            f"published {got.get('inspectors')}")
    if len(again["assignments"]) != len(bundle.get("assignments") or []):
        problems.append("the number of assignments differs")
    return problems
