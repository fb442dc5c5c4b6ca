"""The detector contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt


class DetectorParamsError(ValueError):
    pass


@dataclass(frozen=True)
class Finding:
    """Evidence that one device misbehaves: the device's key, a severity and the numbers that show it."""

    device: int
    severity: str  # info | warning | critical
    evidence: dict[str, Any] = field(default_factory=dict)


Columns = Mapping[str, npt.NDArray[Any]]
State = dict[str, Any]


class Detector(ABC):
    """Base class: subclasses set ``key``, ``kind`` (the telemetry kind they read), ``defaults`` and
    ``schema`` (JSON Schema of the parameters) and implement ``run``."""

    key: ClassVar[str]
    kind: ClassVar[str]
    title_zh: ClassVar[str]
    defaults: ClassVar[dict[str, float]] = {}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(self, **params: float) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise DetectorParamsError(f"{self.key}: unknown parameters {sorted(unknown)}")
        merged = {**self.defaults, **params}
        for name, value in merged.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise DetectorParamsError(f"{self.key}.{name} must be a finite number")
            lo, hi = self.bounds.get(name, (-np.inf, np.inf))
            if not lo <= value <= hi:
                raise DetectorParamsError(f"{self.key}.{name} must lie between {lo} and {hi}")
        self.params: dict[str, float] = {k: float(v) for k, v in merged.items()}

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        props = {}
        for name, default in cls.defaults.items():
            lo, hi = cls.bounds.get(name, (None, None))
            prop: dict[str, Any] = {"type": "number", "default": default}
            if lo is not None:
                prop["minimum"] = lo
            if hi is not None:
                prop["maximum"] = hi
            props[name] = prop
        return {"type": "object", "properties": props, "additionalProperties": False}

    @abstractmethod
    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        """Findings for this batch and the state to keep for the next one (the input is not changed)."""


def groups(device: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Sorted unique devices with the start and end index of each device's rows (rows must be sorted by
    device first)."""
    if device.size == 0:
        empty = np.array([], dtype=np.intp)
        return device[:0], empty, empty
    change = np.flatnonzero(np.diff(device)) + 1
    starts = np.concatenate(([0], change)).astype(np.intp)
    ends = np.concatenate((change, [device.size])).astype(np.intp)
    return device[starts], starts, ends


def nearest_distance(device: npt.NDArray[np.int64], x: npt.NDArray[np.float64], ref_device: npt.NDArray[np.int64],
                     ref: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """For each ``(device, x)`` the smallest ``|x − r|`` over the ``r`` of ``ref`` with the same device (``inf``
    when there is none).  Vectorised: rows and references are sorted together by device, then value; the
    nearest reference of a row is the last one before it or the first one after it within its device."""
    n = device.size
    out = np.full(n, np.inf)
    if not n or not ref.size:
        return out
    dev_all = np.concatenate([device, ref_device])
    val_all = np.concatenate([x, ref])
    is_ref = np.concatenate([np.zeros(n, dtype=bool), np.ones(ref.size, dtype=bool)])
    order = np.lexsort((val_all, dev_all))
    d, v, r = dev_all[order], val_all[order], is_ref[order]
    pos = np.arange(d.size)
    before = np.maximum.accumulate(np.where(r, pos, -1))
    after = np.minimum.accumulate(np.where(r, pos, d.size)[::-1])[::-1]
    rows = ~r
    best = np.full(d.size, np.inf)
    for near in (before, after):
        ok = rows & (near >= 0) & (near < d.size)
        k = np.clip(near, 0, d.size - 1)
        ok &= d[k] == d
        best = np.where(ok, np.minimum(best, np.abs(v - v[k])), best)
    out[order[rows]] = best[rows]
    return out
