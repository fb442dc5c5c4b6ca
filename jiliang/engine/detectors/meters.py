"""Household meter detectors (户用水表、燃气表、电能表): reverse flow, stuck register, implausible jumps.

Columns (sorted by device, then time): ``device``, ``seq``, ``ts`` (seconds since the epoch),
``register_milli``, ``flags`` (bit 1 = reverse).  State per device: the last reading (time, register).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from jiliang.engine.detectors.base import Columns, Detector, Finding, State, groups

REVERSE_FLAG = 1


def _with_previous(batch: Columns, state: State) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                                                           npt.NDArray[np.float64], npt.NDArray[np.float64],
                                                           npt.NDArray[np.float64]]:
    """device, time, register and each row's previous time and register (from the batch or the state)."""
    dev = np.asarray(batch["device"], dtype=np.int64)
    ts = np.asarray(batch["ts"], dtype=np.float64)
    reg = np.asarray(batch["register_milli"], dtype=np.float64)
    prev_ts = np.empty_like(ts)
    prev_reg = np.empty_like(reg)
    if dev.size:
        prev_ts[1:], prev_reg[1:] = ts[:-1], reg[:-1]
        first = np.ones(dev.size, dtype=bool)
        first[1:] = dev[1:] != dev[:-1]
        last = state.get("last", {})
        for i in np.flatnonzero(first):
            t, r = last.get(str(int(dev[i])), (np.nan, np.nan))
            prev_ts[i], prev_reg[i] = t, r
    return dev, ts, reg, prev_ts, prev_reg


def _remember(dev: npt.NDArray[np.int64], ts: npt.NDArray[np.float64], reg: npt.NDArray[np.float64],
              state: State) -> State:
    last = dict(state.get("last", {}))
    devices, _starts, ends = groups(dev)
    for d, e in zip(devices, ends, strict=True):
        last[str(int(d))] = (float(ts[e - 1]), float(reg[e - 1]))
    return {**state, "last": last}


class MeterReverseFlow(Detector):
    """The register runs backwards, or the meter reports reverse flow (倒转/逆流).

    >>> import numpy as np
    >>> b = {"device": np.array([1, 1, 2, 2]), "seq": np.array([1, 2, 1, 2]), "ts": np.array([0, 3600, 0, 3600]),
    ...      "register_milli": np.array([1000, 900, 5000, 5100]), "flags": np.array([0, 0, 0, 0])}
    >>> [(f.device, f.evidence["largest_decrease_milli"]) for f in MeterReverseFlow().run(b, {})[0]]
    [(1, 100.0)]
    """

    key = "meter.reverse_flow"
    kind = "meter.reading"
    title_zh = "表计倒转（逆流）"
    defaults: ClassVar[dict[str, float]] = {"tolerance_milli": 0.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"tolerance_milli": (0, 1e9)}

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        dev, ts, reg, _pts, preg = _with_previous(batch, state)
        drop = preg - reg
        backwards = np.nan_to_num(drop, nan=-1.0) > self.params["tolerance_milli"]
        flagged = (np.asarray(batch["flags"], dtype=np.int64) & REVERSE_FLAG) != 0
        bad = backwards | flagged
        findings = []
        devices, starts, ends = groups(dev)
        for d, s, e in zip(devices, starts, ends, strict=True):
            idx = np.flatnonzero(bad[s:e]) + s
            if idx.size:
                findings.append(Finding(int(d), "critical", {
                    "readings": int(idx.size), "largest_decrease_milli": float(np.nanmax(np.where(backwards[idx],
                                                                                                  drop[idx], 0.0))),
                    "reverse_flags": int(flagged[idx].sum()), "seqs": [int(batch["seq"][i]) for i in idx[:10]]}))
        return findings, _remember(dev, ts, reg, state)


class MeterStuckRegister(Detector):
    """The register has not moved for ``min_hours`` while most neighbouring meters (same place) consume
    (表计停走).  Column ``place`` (the residential compound's id) is needed besides the common ones.

    >>> import numpy as np
    >>> h = 3600
    >>> b = {"device": np.array([1, 1, 1, 2, 2, 2]), "place": np.array([9] * 6), "seq": np.array([1, 2, 3] * 2),
    ...      "ts": np.array([0, 30 * h, 60 * h] * 2), "register_milli": np.array([500, 500, 500, 10, 90, 170]),
    ...      "flags": np.zeros(6)}
    >>> [(f.device, f.evidence["hours_unchanged"]) for f in MeterStuckRegister().run(b, {})[0]]
    [(1, 60.0)]
    """

    key = "meter.stuck_register"
    kind = "meter.reading"
    title_zh = "表计停走（邻户正常用量）"
    defaults: ClassVar[dict[str, float]] = {"min_hours": 48.0, "neighbour_share": 0.5}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"min_hours": (1, 24 * 90), "neighbour_share": (0, 1)}

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        dev = np.asarray(batch["device"], dtype=np.int64)
        ts = np.asarray(batch["ts"], dtype=np.float64)
        reg = np.asarray(batch["register_milli"], dtype=np.float64)
        place = np.asarray(batch["place"], dtype=np.int64)
        since: dict[str, Any] = dict(state.get("since", {}))  # device -> [register, time it took that value]
        moving: dict[int, bool] = {}
        devices, starts, ends = groups(dev)
        for d, s, e in zip(devices, starts, ends, strict=True):
            key = str(int(d))
            r0, t0 = since.get(key, (reg[s], ts[s]))
            for i in range(s, e):
                if reg[i] != r0:
                    r0, t0 = reg[i], ts[i]
            since[key] = (float(r0), float(t0))
            moving[int(d)] = bool(reg[e - 1] > reg[s]) or bool(ts[e - 1] - t0 < self.params["min_hours"] * 3600)
        by_place: dict[int, list[int]] = {}
        for d, s in zip(devices, starts, strict=True):
            by_place.setdefault(int(place[s]), []).append(int(d))
        findings = []
        for d, s, e in zip(devices, starts, ends, strict=True):
            r0, t0 = since[str(int(d))]
            hours = (ts[e - 1] - t0) / 3600.0
            if hours < self.params["min_hours"]:
                continue
            others = [o for o in by_place[int(place[s])] if o != int(d)]
            if not others:
                continue
            share = sum(moving[o] for o in others) / len(others)
            if share >= self.params["neighbour_share"]:
                findings.append(Finding(int(d), "warning", {"hours_unchanged": round(float(hours), 1),
                                                            "register_milli": r0, "neighbours": len(others),
                                                            "neighbours_consuming_share": round(share, 3)}))
        return findings, {**state, "since": since}


class MeterImplausibleJump(Detector):
    """Consumption between two readings faster than the meter can pass (读数异常跳变).  Column
    ``max_rate_milli_per_h`` gives each row's meter capacity (e.g. Q4 for a water meter)."""

    key = "meter.implausible_jump"
    kind = "meter.reading"
    title_zh = "读数异常跳变"
    defaults: ClassVar[dict[str, float]] = {"factor": 1.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"factor": (0.1, 100)}

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        dev, ts, reg, pts, preg = _with_previous(batch, state)
        hours = np.maximum((ts - pts) / 3600.0, 1.0 / 60)
        rate = (reg - preg) / hours
        cap = np.asarray(batch["max_rate_milli_per_h"], dtype=np.float64) * self.params["factor"]
        bad = np.nan_to_num(rate, nan=0.0) > cap
        findings = []
        devices, starts, ends = groups(dev)
        for d, s, e in zip(devices, starts, ends, strict=True):
            idx = np.flatnonzero(bad[s:e]) + s
            if idx.size:
                worst = idx[np.argmax(rate[idx])]
                findings.append(Finding(int(d), "warning", {
                    "jumps": int(idx.size), "largest_rate_milli_per_h": float(rate[worst]),
                    "capacity_milli_per_h": float(cap[worst]), "seq": int(batch["seq"][worst])}))
        return findings, _remember(dev, ts, reg, state)
