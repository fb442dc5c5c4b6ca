"""Metrology credit score (计量信用评分) with time decay, and grades A/B/C/D.

``score = clamp(base + Σ weight(type) × 0.5 ** (age_days / half_life(type)), 0, 100)`` over an entity's
events; the grade is the first band whose threshold the score reaches.  Weights, half-lives, the base and
the thresholds are configuration (:class:`CreditConfig`), validated on construction; the defaults below
are the project's own starting values, not taken from a regulation, and a bureau is expected to set its
own (SAMR's 2022 opinion leaves ratios and criteria to local practice).

>>> cfg = CreditConfig.default()
>>> s = scores(cfg, n_entities=2, entity=[0, 0, 1], event=["commitment_signed", "spot_check_failed",
...            "alert_confirmed"], age_days=[0.0, 365.0, 0.0])
>>> [round(float(x), 2) for x in s], grades(cfg, s)
([77.5, 60.0], ['B', 'C'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

GRADES = ("A", "B", "C", "D")

DEFAULT_EVENTS: dict[str, tuple[float, float]] = {
    # event type: (weight in points, half-life in days)
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


class CreditConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CreditConfig:
    events: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_EVENTS))
    base: float = 80.0
    thresholds: tuple[float, float, float] = (90.0, 75.0, 60.0)  # A ≥ 90, B ≥ 75, C ≥ 60, else D

    def __post_init__(self) -> None:
        if not self.events:
            raise CreditConfigError("at least one event type is needed")
        for name, (w, hl) in self.events.items():
            if not np.isfinite(w):
                raise CreditConfigError(f"event {name!r}: weight must be a finite number")
            if not (hl > 0 and np.isfinite(hl)):
                raise CreditConfigError(f"event {name!r}: half-life must be a positive number of days")
        if not 0 <= self.base <= 100:
            raise CreditConfigError("base must lie between 0 and 100")
        a, b, c = self.thresholds
        if not 100 >= a > b > c >= 0:
            raise CreditConfigError("thresholds must fall strictly: 100 ≥ A > B > C ≥ 0")

    @classmethod
    def default(cls) -> CreditConfig:
        return cls()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CreditConfig:
        events = {str(k): (float(v["weight"]), float(v["half_life_days"])) for k, v in data.get("events", {}).items()}
        return cls(events=events or dict(DEFAULT_EVENTS), base=float(data.get("base", 80.0)),
                   thresholds=tuple(float(x) for x in data.get("thresholds", (90.0, 75.0, 60.0))))  # type: ignore[arg-type]

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
                  age_days: Sequence[float] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each event's current contribution in points (negative ages, i.e. future events, are refused)."""
    codes = _type_codes(cfg, event)
    age = np.asarray(age_days, dtype=np.float64)
    if age.size and age.min() < 0:
        raise CreditConfigError("an event lies in the future (negative age)")
    w = np.array([cfg.events[n][0] for n in cfg.event_names])
    hl = np.array([cfg.events[n][1] for n in cfg.event_names])
    out: npt.NDArray[np.float64] = w[codes] * np.exp2(-age / hl[codes])
    return out


def scores(cfg: CreditConfig, *, n_entities: int, entity: Sequence[int] | npt.NDArray[np.intp],
           event: Sequence[str] | npt.NDArray[Any], age_days: Sequence[float] | npt.NDArray[np.float64]
           ) -> npt.NDArray[np.float64]:
    """Scores of ``n_entities`` entities from flat event arrays (vectorised: millions per second)."""
    ent = np.asarray(entity, dtype=np.intp)
    contrib = contributions(cfg, event, age_days)
    total = np.bincount(ent, weights=contrib, minlength=n_entities)[:n_entities]
    out: npt.NDArray[np.float64] = np.clip(cfg.base + total, 0.0, 100.0)
    return out


def grades(cfg: CreditConfig, score: npt.NDArray[np.float64] | Sequence[float]) -> list[str]:
    s = np.asarray(score, dtype=np.float64)
    a, b, c = cfg.thresholds
    idx = np.where(s >= a, 0, np.where(s >= b, 1, np.where(s >= c, 2, 3)))
    return [GRADES[i] for i in idx]


def explain(cfg: CreditConfig, events: Sequence[tuple[str, float]]) -> list[dict[str, Any]]:
    """Each event's contribution for one entity's explanation page, largest effect first."""
    if not events:
        return []
    names = [e for e, _ in events]
    contrib = contributions(cfg, names, [a for _, a in events])
    rows = [{"event": n, "age_days": a, "weight": cfg.events[n][0], "half_life_days": cfg.events[n][1],
             "contribution": round(float(c), 4)} for (n, a), c in zip(events, contrib, strict=True)]
    return sorted(rows, key=lambda r: -abs(r["contribution"]))
