"""Metrology credit score (计量信用评分) with time decay, grades A/B/C/D, and the grade → draw-share linkage.

``score = clamp(base + Σ weight(type) × 0.5 ** (age_days / half_life(type)), low, high)`` over an entity's
events; the grade is the first band whose threshold the score reaches.  Weights, half-lives, the base, the
clamp bounds and the thresholds are configuration (:class:`CreditConfig`), validated on construction
(:func:`problems` names every faulty field).  The default weights, half-lives, base, bounds and thresholds
below are the project's own starting values, not taken from any regulation or published scheme; a bureau
is expected to set its own (SAMR's 2022 opinion, 国市监计量发〔2022〕23号, asks for credit-graded supervision
but leaves ratios and criteria to local practice).

The default draw shares per grade (各等级抽查比例, the share of each grade drawn into an inspection plan) are
the upper ends of the bands of a published county scheme: A ≤ 5 %, B 5–20 %, C 21–60 %, D 61–100 %.

>>> cfg = CreditConfig.default()
>>> s = scores(cfg, n_entities=2, entity=[0, 0, 1], event=["commitment_signed", "spot_check_failed",
...            "alert_confirmed"], age_days=[0.0, 365.0, 0.0])
>>> [round(float(x), 2) for x in s], grades(cfg, s)
([77.5, 60.0], ['B', 'C'])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

GRADES = ("A", "B", "C", "D")

# Our own starting values (no published source): event type -> (weight in points, half-life in days).
DEFAULT_EVENTS: dict[str, tuple[float, float]] = {
    "spot_check_passed": (2.0, 365.0),
    "spot_check_failed": (-15.0, 365.0),
    "alert_confirmed": (-20.0, 365.0),
    "complaint_upheld": (-8.0, 365.0),
    "case_penalty": (-30.0, 730.0),
    "rectification_done": (5.0, 365.0),
    "commitment_signed": (5.0, 730.0),
    "demonstration_award": (10.0, 730.0),
    "verification_overdue": (-5.0, 180.0),
}
DEFAULT_BASE = 80.0
DEFAULT_CLAMP = (0.0, 100.0)
DEFAULT_THRESHOLDS = (90.0, 75.0, 60.0)  # A ≥ 90, B ≥ 75, C ≥ 60, else D
# Draw shares per grade: upper ends of the bands of a published county scheme (A ≤ 5 %, B 5–20 %,
# C 21–60 %, D 61–100 %); a plan may set its own.
DEFAULT_SHARES: dict[str, float] = {"A": 0.05, "B": 0.20, "C": 0.60, "D": 1.00}
SHARE_BANDS: dict[str, tuple[float, float]] = {"A": (0.0, 0.05), "B": (0.05, 0.20), "C": (0.21, 0.60),
                                               "D": (0.61, 1.00)}

# Sanity bounds for validation: one event moves a score by at most the whole 0–100 scale; a half-life
# lies between one day and fifty years.
WEIGHT_LIMIT = 100.0
HALF_LIFE_RANGE = (1.0, 18262.5)
SCORE_RANGE = (0.0, 100.0)


class CreditConfigError(ValueError):
    """An invalid credit configuration; ``problems`` lists ``(field, reason)`` pairs."""

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = list(problems) or [("", message)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x


def problems(data: Mapping[str, Any], *, kinds: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Every problem of a stored configuration (see :meth:`CreditConfig.as_mapping` for its shape), as
    ``(field, reason)``; empty when valid.  ``kinds``: the event kinds that must all be configured."""
    out: list[tuple[str, str]] = []
    lo_s, hi_s = SCORE_RANGE

    def num(field_name: str, value: Any) -> float | None:
        x = _number(value)
        if x is None:
            out.append((field_name, "must be a number"))
        elif not math.isfinite(x):
            out.append((field_name, "must be a finite number"))
            return None
        return x

    events = data.get("events")
    if not isinstance(events, Mapping) or not events:
        out.append(("events", "at least one event kind with weight and half-life is needed"))
        events = {}
    for kind in kinds or ():
        if kind not in events:
            out.append((f"events.{kind}", "missing: every event kind needs a weight and a half-life"))
    for kind, ev in events.items():
        if kinds is not None and kind not in kinds:
            out.append((f"events.{kind}", "unknown event kind"))
            continue
        if not isinstance(ev, Mapping):
            out.append((f"events.{kind}", "must hold weight and half_life_days"))
            continue
        w = num(f"events.{kind}.weight", ev.get("weight"))
        if w is not None and not -WEIGHT_LIMIT <= w <= WEIGHT_LIMIT:
            out.append((f"events.{kind}.weight", f"must lie between -{WEIGHT_LIMIT:g} and {WEIGHT_LIMIT:g} points"))
        hl = num(f"events.{kind}.half_life_days", ev.get("half_life_days"))
        if hl is not None and not hl > 0:
            out.append((f"events.{kind}.half_life_days", "must be greater than 0 days"))
        elif hl is not None and not HALF_LIFE_RANGE[0] <= hl <= HALF_LIFE_RANGE[1]:
            out.append((f"events.{kind}.half_life_days",
                        f"must lie between {HALF_LIFE_RANGE[0]:g} and {HALF_LIFE_RANGE[1]:g} days"))
    clamp = data.get("clamp", DEFAULT_CLAMP)
    low = high = None
    if not isinstance(clamp, Sequence) or isinstance(clamp, str) or len(clamp) != 2:
        out.append(("clamp", "must be two numbers: low and high"))
    else:
        low, high = num("clamp.low", clamp[0]), num("clamp.high", clamp[1])
        if low is not None and not lo_s <= low <= hi_s:
            out.append(("clamp.low", f"must lie between {lo_s:g} and {hi_s:g}"))
        if high is not None and not lo_s <= high <= hi_s:
            out.append(("clamp.high", f"must lie between {lo_s:g} and {hi_s:g}"))
        if low is not None and high is not None and not low < high:
            out.append(("clamp.high", "must be greater than clamp.low"))
    base = num("base", data.get("base"))
    if base is not None and low is not None and high is not None and not low <= base <= high:
        out.append(("base", f"must lie within the clamp bounds {low:g}–{high:g}"))
    th = data.get("thresholds")
    if isinstance(th, Sequence) and not isinstance(th, str) and len(th) == 3:
        th = dict(zip(GRADES, th, strict=False))
    if not isinstance(th, Mapping):
        out.append(("thresholds", "must give the lowest score of grades A, B and C"))
    else:
        t = {g: num(f"thresholds.{g}", th.get(g)) for g in GRADES[:3]}
        for g in GRADES[:3]:
            x = t[g]
            if x is not None and low is not None and high is not None and not low <= x <= high:
                out.append((f"thresholds.{g}", f"must lie within the clamp bounds {low:g}–{high:g}"))
        for upper, lower in (("A", "B"), ("B", "C")):
            a, b = t[upper], t[lower]
            if a is not None and b is not None and not a > b:
                out.append((f"thresholds.{lower}", f"must be strictly lower than thresholds.{upper} ({a:g})"))
    shares = data.get("shares", DEFAULT_SHARES)
    if not isinstance(shares, Mapping):
        out.append(("shares", "must give a share for each grade A–D"))
    else:
        vals: dict[str, float] = {}
        for g in GRADES:
            if g not in shares:
                out.append((f"shares.{g}", "missing"))
                continue
            x = num(f"shares.{g}", shares[g])
            if x is not None and not 0.0 <= x <= 1.0:
                out.append((f"shares.{g}", "must lie between 0 and 1"))
            elif x is not None:
                vals[g] = x
        for g in shares:
            if g not in GRADES:
                out.append((f"shares.{g}", "unknown grade"))
        for better, worse in itertools.pairwise(GRADES):
            if better in vals and worse in vals and vals[worse] < vals[better]:
                out.append((f"shares.{worse}", f"must not be lower than shares.{better}: a worse grade is "
                                               "inspected at least as often"))
    return out


@dataclass(frozen=True)
class CreditConfig:
    events: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_EVENTS))
    base: float = DEFAULT_BASE
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS
    clamp: tuple[float, float] = DEFAULT_CLAMP
    shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))

    def __post_init__(self) -> None:
        found = problems(self.as_mapping())
        if found:
            raise CreditConfigError("; ".join(f"{f}: {r}" for f, r in found), found)

    @classmethod
    def default(cls) -> CreditConfig:
        return cls()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, kinds: Sequence[str] | None = None) -> CreditConfig:
        """From the stored shape (:meth:`as_mapping`); every problem is reported at once."""
        found = problems(data, kinds=kinds)
        if found:
            raise CreditConfigError("; ".join(f"{f}: {r}" for f, r in found), found)
        th = data["thresholds"]
        if isinstance(th, Mapping):
            th = [th[g] for g in GRADES[:3]]
        clamp = data.get("clamp", DEFAULT_CLAMP)
        return cls(events={str(k): (float(v["weight"]), float(v["half_life_days"]))
                           for k, v in data["events"].items()},
                   base=float(data["base"]), thresholds=(float(th[0]), float(th[1]), float(th[2])),
                   clamp=(float(clamp[0]), float(clamp[1])),
                   shares={g: float(data.get("shares", DEFAULT_SHARES)[g]) for g in GRADES})

    def as_mapping(self) -> dict[str, Any]:
        """The stored shape: ``{"events": {kind: {"weight", "half_life_days"}}, "base", "clamp": [low, high],
        "thresholds": {"A", "B", "C"}, "shares": {"A", "B", "C", "D"}}``."""
        return {"events": {k: {"weight": w, "half_life_days": hl} for k, (w, hl) in self.events.items()},
                "base": self.base, "clamp": list(self.clamp),
                "thresholds": dict(zip(GRADES, self.thresholds, strict=False)), "shares": dict(self.shares)}

    @property
    def event_names(self) -> list[str]:
        return list(self.events)


def _type_codes(cfg: CreditConfig, event: Sequence[str] | npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    index = {name: i for i, name in enumerate(cfg.event_names)}
    arr = np.asarray(event)
    if arr.dtype.kind in "iu":
        codes = arr.astype(np.intp)
        if codes.size and (codes.min() < 0 or codes.max() >= len(index)):
            raise CreditConfigError("event code out of range")
        return codes
    try:
        return np.fromiter((index[e] for e in arr), dtype=np.intp, count=arr.size)
    except KeyError as exc:
        raise CreditConfigError(f"unknown event type {exc.args[0]!r}") from None


def contributions(cfg: CreditConfig, event: Sequence[str] | npt.NDArray[Any],
                  age_days: Sequence[float] | npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Each event's current contribution in points (negative ages, i.e. future events, are refused).
    ``event`` holds kind names or codes (positions in ``cfg.event_names``)."""
    codes = _type_codes(cfg, event)
    age = np.asarray(age_days, dtype=np.float64)
    if age.size and age.min() < 0:
        raise CreditConfigError("an event lies in the future (negative age)")
    w = np.array([cfg.events[n][0] for n in cfg.event_names])
    hl = np.array([cfg.events[n][1] for n in cfg.event_names])
    out: npt.NDArray[np.float64] = w[codes] * np.exp2(-age / hl[codes])
    return out


def scores(cfg: CreditConfig, *, n_entities: int, entity: Sequence[int] | npt.NDArray[np.integer[Any]],
           event: Sequence[str] | npt.NDArray[Any], age_days: Sequence[float] | npt.NDArray[Any]
           ) -> npt.NDArray[np.float64]:
    """Scores of ``n_entities`` entities from flat event arrays (vectorised: millions per second);
    ``entity[i]`` is the position (0 … n_entities-1) of event i's entity."""
    ent = np.asarray(entity, dtype=np.intp)
    contrib = contributions(cfg, event, age_days)
    total = np.bincount(ent, weights=contrib, minlength=n_entities)[:n_entities]
    out: npt.NDArray[np.float64] = np.clip(cfg.base + total, cfg.clamp[0], cfg.clamp[1])
    return out


def grade_codes(cfg: CreditConfig, score: npt.NDArray[np.float64] | Sequence[float]) -> npt.NDArray[np.int8]:
    """Grades as positions in :data:`GRADES` (0 = A … 3 = D), for columnar callers."""
    s = np.asarray(score, dtype=np.float64)
    a, b, c = cfg.thresholds
    out: npt.NDArray[np.int8] = np.where(s >= a, 0, np.where(s >= b, 1, np.where(s >= c, 2, 3))).astype(np.int8)
    return out


def grades(cfg: CreditConfig, score: npt.NDArray[np.float64] | Sequence[float]) -> list[str]:
    return [GRADES[i] for i in grade_codes(cfg, score).tolist()]


def explain(cfg: CreditConfig, events: Sequence[tuple[str, float]], *, refs: Sequence[Any] | None = None
            ) -> list[dict[str, Any]]:
    """Each event's contribution for one entity's explanation page, largest effect first.  ``refs`` (one per
    event, e.g. the stored event) is passed through as ``"ref"`` so the caller can show date and source."""
    if not events:
        return []
    names = [e for e, _ in events]
    contrib = contributions(cfg, names, [a for _, a in events])
    rows = [{"event": n, "age_days": a, "weight": cfg.events[n][0], "half_life_days": cfg.events[n][1],
             "contribution": round(float(c), 4), "exact": float(c)}
            for (n, a), c in zip(events, contrib, strict=True)]
    if refs is not None:
        for row, ref in zip(rows, refs, strict=True):
            row["ref"] = ref
    return sorted(rows, key=lambda r: -abs(r["contribution"]))


def score_one(cfg: CreditConfig, events: Sequence[tuple[str, float]]) -> float:
    """One entity's score from its ``(kind, age_days)`` events (the same sum as :func:`scores`)."""
    s = scores(cfg, n_entities=1, entity=[0] * len(events), event=[e for e, _ in events],
               age_days=[a for _, a in events])
    return float(s[0])
