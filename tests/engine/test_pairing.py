"""jiliang-pairing-v1: two inspectors per target, never conflicted, never the previous pair, balanced,
deterministic from the seed, and every eligible inspector used."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from jiliang.engine.pairing import (
    ALGORITHM,
    FEWER_THAN_TWO,
    ONLY_PREVIOUS_PAIR,
    PairingError,
    pair,
    pairing_bundle,
    verify,
)

SEED = hashlib.sha256(b"seed").hexdigest()
TARGETS = [f"E{i:03d}" for i in range(41)]
INSPECTORS = [f"i{i}" for i in range(7)]


def seed(n: int) -> str:
    return hashlib.sha256(f"seed {n}".encode()).hexdigest()


def test_every_target_gets_two_different_inspectors_in_target_order() -> None:
    r = pair(seed_hex=SEED, targets=TARGETS, inspectors=INSPECTORS)
    assert [a.target for a in r] == TARGETS
    for a in r:
        assert a.inspectors is not None and a.reason == ""
        assert a.inspectors[0] != a.inspectors[1] and list(a.inspectors) == sorted(a.inspectors)
        assert set(a.inspectors) <= set(INSPECTORS)


@pytest.mark.parametrize("n_targets,n_inspectors", [(1, 2), (3, 4), (10, 3), (40, 7), (41, 9), (5, 11)])
def test_load_is_balanced_within_one_without_constraints(n_targets: int, n_inspectors: int) -> None:
    inspectors = [f"x{i}" for i in range(n_inspectors)]
    for s in range(20):
        loads = pair(seed_hex=seed(s), targets=TARGETS[:n_targets], inspectors=inspectors).loads()
        counts = [loads.get(i, 0) for i in inspectors]
        assert max(counts) - min(counts) <= 1, (s, counts)
        assert sum(counts) == 2 * n_targets


def test_never_an_inspector_with_a_declared_conflict() -> None:
    conflicts = {t: INSPECTORS[: (i % 5)] for i, t in enumerate(TARGETS)}  # up to four of seven barred
    for s in range(30):
        for a in pair(seed_hex=seed(s), targets=TARGETS, inspectors=INSPECTORS, conflicts=conflicts):
            assert a.inspectors is not None
            assert not set(a.inspectors) & set(conflicts[a.target]), (s, a)


def test_never_the_previous_pair() -> None:
    # make the "natural" first choice the previous pair: find what the draw picks, then forbid it
    natural = pair(seed_hex=SEED, targets=TARGETS, inspectors=INSPECTORS)
    previous = {a.target: list(a.inspectors or ()) for a in natural}
    for s in [SEED, *(seed(k) for k in range(10))]:
        again = pair(seed_hex=s, targets=TARGETS, inspectors=INSPECTORS, previous=previous)
        for a in again:
            assert a.inspectors is not None and set(a.inspectors) != set(previous[a.target]), a
    # with exactly the previous pair eligible, the task stays unassigned with the reason
    only = pair(seed_hex=SEED, targets=["E1"], inspectors=["a", "b"], previous={"E1": ["b", "a"]})
    assert only[0].inspectors is None and only[0].reason == ONLY_PREVIOUS_PAIR
    # one more inspector: a different pair is drawn, sharing at most one member
    three = pair(seed_hex=SEED, targets=["E1"], inspectors=["a", "b", "c"], previous={"E1": ["a", "b"]})
    assert three[0].inspectors is not None and "c" in three[0].inspectors


def test_fewer_than_two_eligible_is_unassigned_not_a_crash() -> None:
    r = pair(seed_hex=SEED, targets=["E1", "E2", "E3"], inspectors=["a", "b", "c"],
             conflicts={"E1": ["a", "b"], "E2": ["a", "b", "c"]})
    assert [a.reason for a in r] == [FEWER_THAN_TWO, FEWER_THAN_TWO, ""]
    assert r[0].inspectors is None and r[1].inspectors is None and r[2].inspectors is not None
    assert pair(seed_hex=SEED, targets=["E1"], inspectors=[])[0].reason == FEWER_THAN_TWO
    assert pair(seed_hex=SEED, targets=[], inspectors=INSPECTORS) == []


def test_deterministic_from_the_seed_and_independent_of_inspector_order() -> None:
    a = pair(seed_hex=SEED, targets=TARGETS, inspectors=INSPECTORS)
    b = pair(seed_hex=SEED, targets=TARGETS, inspectors=list(reversed(INSPECTORS)))
    assert a == b
    c = pair(seed_hex=seed(1), targets=TARGETS, inspectors=INSPECTORS)
    assert [x.inspectors for x in a] != [x.inspectors for x in c]  # another seed, another pairing


def test_each_eligible_inspector_is_used_and_pairs_spread_evenly() -> None:
    """Statistical check: one target, five inspectors (one conflicted) over 2,000 seeds.  Each of the four
    eligible inspectors should be in about half of the pairs (2 of 4) and each of the six pairs in about
    1/6 of the draws; the conflicted one never."""
    inspectors = ["a", "b", "c", "d", "e"]
    people: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    n = 2000
    for s in range(n):
        a = pair(seed_hex=seed(s), targets=["E1"], inspectors=inspectors, conflicts={"E1": ["e"]})[0]
        assert a.inspectors is not None
        people.update(a.inspectors)
        pairs[a.inspectors] += 1
    assert people["e"] == 0
    for who in "abcd":
        assert abs(people[who] / n - 0.5) < 0.05, people  # sd ≈ 0.011
    assert len(pairs) == 6
    for count in pairs.values():
        assert abs(count / n - 1 / 6) < 0.04, pairs  # sd ≈ 0.008


def test_bundle_verifies_and_detects_a_changed_assignment() -> None:
    b = pairing_bundle(seed_hex=SEED, targets=TARGETS[:5], inspectors=INSPECTORS, conflicts={"E001": ["i0"]},
                       previous={"E002": ["i1", "i2"]})
    assert b["algorithm"] == ALGORITHM and verify(b, seed_hex=SEED) == []
    tampered = {**b, "assignments": [dict(x) for x in b["assignments"]]}
    tampered["assignments"][0]["inspectors"] = ["i5", "i6"] if b["assignments"][0]["inspectors"] != ["i5", "i6"] \
        else ["i0", "i1"]
    assert verify(tampered, seed_hex=SEED)
    assert verify(b, seed_hex=seed(9))  # another seed does not reproduce it
    assert verify({"algorithm": "other"}, seed_hex=SEED)


def test_inputs_are_checked() -> None:
    with pytest.raises(PairingError):
        pair(seed_hex="zz", targets=["E1"], inspectors=["a", "b"])
    with pytest.raises(PairingError):
        pair(seed_hex="00", targets=["E1"], inspectors=["a", "b"])  # too short
    with pytest.raises(PairingError):
        pair(seed_hex=SEED, targets=["E1", "E1"], inspectors=["a", "b"])
    with pytest.raises(PairingError):
        pair(seed_hex=SEED, targets=["E1"], inspectors=["a", "a"])
