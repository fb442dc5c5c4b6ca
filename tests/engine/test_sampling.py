from __future__ import annotations

import itertools
from typing import Any

import pytest

from jiliang.engine.sampling import LEVELS, SamplingError, acceptance_probability, aql_values, plan, tables

CASES = tables()["test_cases_level_II_normal_single"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"lot{c['lot']}-aql{c['aql']}")
def test_reference_cases(case: dict[str, Any]) -> None:
    p = plan(lot_size=case["lot"], aql=case["aql"])
    assert (p.code_letter, p.plan_letter, p.n, p.ac, p.re, p.inspect_all) == (
        case["code_letter"], case["plan_letter"], case["n"], case["ac"], case["re"], case["sample_ge_lot_do_100pct"])


def test_known_buggy_case_uses_the_plan_letters_sample_size() -> None:
    """lot 150, level II, AQL 1.5: F's arrow leads to G, so n = 32 (not 20 as a known calculator says)."""
    p = plan(lot_size=150, aql=1.5)
    assert (p.n, p.ac, p.re) == (32, 1, 2)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("aql", aql_values())
def test_every_level_and_aql_gives_a_plan(level: str, aql: str) -> None:
    for lot in (2, 9, 16, 26, 51, 91, 151, 281, 501, 1201, 3201, 10001, 35001, 150001, 500001, 10**7):
        p = plan(lot_size=lot, aql=aql, level=level)
        assert p.re == p.ac + 1 and p.n >= 2
        assert p.inspect_all == (p.n >= lot)


def test_levels_are_ordered_by_sample_size() -> None:
    for lot in (500, 5000, 50000):
        sizes = [plan(lot_size=lot, aql="1.0", level=lv).n for lv in ("I", "II", "III")]
        assert sizes == sorted(sizes)


@pytest.mark.parametrize(("kwargs", "msg"), [
    ({"lot_size": 1, "aql": 1.0}, "at least 2"),
    ({"lot_size": 100, "aql": 0.7}, "not in Table 2-A"),
    ({"lot_size": 100, "aql": "x"}, "not a number"),
    ({"lot_size": 100, "aql": 1.0, "level": "IV"}, "inspection level"),
])
def test_bad_input(kwargs: dict[str, Any], msg: str) -> None:
    with pytest.raises(SamplingError, match=msg):
        plan(**kwargs)


def test_operating_characteristic_is_monotone() -> None:
    p = plan(lot_size=1200, aql=1.0)
    probs = [acceptance_probability(p.n, p.ac, d / 100) for d in range(0, 21)]
    assert probs[0] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(probs))
    assert probs[1] > 0.9 and probs[-1] < 0.01
