"""GB/T 2828.1 (= ISO 2859-1) normal single sampling plans (计数抽样检验).

The lot size and inspection level give a code letter (Table 1); the code letter and AQL give the plan in
Table 2-A, following the arrows to the first plan below (``d``) or above (``u``).  The plan letter actually
used decides the sample size n; Re = Ac + 1; when n ≥ the lot size the whole lot is inspected.

>>> p = plan(lot_size=150, aql=1.5)
>>> (p.code_letter, p.plan_letter, p.n, p.ac, p.re)
('F', 'G', 32, 1, 2)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

LEVELS = ("S-1", "S-2", "S-3", "S-4", "I", "II", "III")
_LEVEL_KEY = {"S-1": "S1", "S-2": "S2", "S-3": "S3", "S-4": "S4", "I": "I", "II": "II", "III": "III"}


class SamplingError(ValueError):
    pass


@cache
def tables() -> dict[str, Any]:
    text = resources.files("jiliang.engine").joinpath("data/gb2828.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def letters() -> list[str]:
    return list(tables()["sample_size_by_letter"])


def aql_values() -> list[str]:
    return list(tables()["table_2A_normal_single"])


def _aql_key(aql: float | str) -> str:
    try:
        value = float(aql)
    except (TypeError, ValueError):
        raise SamplingError(f"AQL {aql!r} is not a number") from None
    for key in aql_values():
        if math.isclose(float(key), value, rel_tol=1e-9):
            return key
    raise SamplingError(f"AQL {aql} is not in Table 2-A (supported: {', '.join(aql_values())})")


def code_letter(lot_size: int, level: str = "II") -> str:
    if level not in _LEVEL_KEY:
        raise SamplingError(f"unknown inspection level {level!r} (use {', '.join(LEVELS)})")
    if lot_size < 2:
        raise SamplingError("the lot size must be at least 2")
    for row in tables()["code_letters"]:
        lo, hi = row["lot"]
        if lot_size >= lo and (hi is None or lot_size <= hi):
            return str(row[_LEVEL_KEY[level]])
    raise SamplingError(f"lot size {lot_size} is outside Table 1")


@dataclass(frozen=True)
class Plan:
    code_letter: str
    plan_letter: str
    n: int
    ac: int
    re: int
    inspect_all: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(*, lot_size: int, aql: float | str, level: str = "II") -> Plan:
    letter = code_letter(lot_size, level)
    column = tables()["table_2A_normal_single"][_aql_key(aql)]
    order = letters()
    i = order.index(letter)
    seen = set()
    while True:
        entry = column[order[i]]
        if entry == "d":
            i += 1
        elif entry == "u":
            i -= 1
        else:
            break
        if i < 0 or i >= len(order) or i in seen:
            raise SamplingError(f"no plan for code letter {letter} at AQL {aql}")
        seen.add(i)
    plan_letter = order[i]
    n = int(tables()["sample_size_by_letter"][plan_letter])
    ac = int(entry)
    return Plan(code_letter=letter, plan_letter=plan_letter, n=n, ac=ac, re=ac + 1, inspect_all=n >= lot_size)


def acceptance_probability(n: int, ac: int, defect_rate: float, lot_size: int | None = None) -> float:
    """Operating characteristic: P(accept) = P(defectives in the sample ≤ Ac), binomial (or hypergeometric
    when the lot size is given and small)."""
    if not 0.0 <= defect_rate <= 1.0:
        raise SamplingError("the defect rate must lie between 0 and 1")
    if lot_size is not None and n >= lot_size:
        return 1.0 if round(defect_rate * lot_size) <= ac else 0.0
    if lot_size is not None and lot_size <= 5000:
        d = round(defect_rate * lot_size)
        total = math.comb(lot_size, n)
        return sum(math.comb(d, k) * math.comb(lot_size - d, n - k) for k in range(0, min(ac, d) + 1)) / total
    return sum(math.comb(n, k) * defect_rate**k * (1 - defect_rate) ** (n - k) for k in range(ac + 1))
