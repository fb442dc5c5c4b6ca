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
        devices, starts, _ends = groups(dev)
        last = state.get("last", {})
        missing = (np.nan, np.nan)
        known = [last.get(k, missing) for k in map(str, devices.tolist())]
        prev_ts[starts] = [float(t) for t, _r in known]
        prev_reg[starts] = [float(r) for _t, r in known]
    return dev, ts, reg, prev_ts, prev_reg


def _with_problems(devices: npt.NDArray[np.int64], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp],
                   bad: npt.NDArray[np.bool_]) -> list[tuple[int, int, int]]:
    """(device, start, end) of the devices with at least one flagged row, in device order."""
    if not bad.any():
        return []
    hit = np.unique(np.searchsorted(starts, np.flatnonzero(bad), side="right") - 1)
    return list(zip(devices[hit].tolist(), starts[hit].tolist(), ends[hit].tolist(), strict=True))


def _remember(dev: npt.NDArray[np.int64], ts: npt.NDArray[np.float64], reg: npt.NDArray[np.float64],
              state: State) -> State:
    last = dict(state.get("last", {}))
    devices, _starts, ends = groups(dev)
    last.update(zip(map(str, devices.tolist()), zip(ts[ends - 1].tolist(), reg[ends - 1].tolist(), strict=True),
                    strict=True))
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
        for d, s, e in _with_problems(devices, starts, ends, bad):
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
        devices, starts, ends = groups(dev)
        if not devices.size:
            return [], {**state, "since": since}
        keys = list(map(str, devices.tolist()))
        # each device's register and time before this batch: the state's, else its first row's
        before = [since.get(k) for k in keys]
        r_init = np.array([reg[s] if b is None else b[0] for b, s in zip(before, starts.tolist(), strict=True)],
                          dtype=np.float64)
        t_init = np.array([ts[s] if b is None else b[1] for b, s in zip(before, starts.tolist(), strict=True)],
                          dtype=np.float64)
        # the register "took its value" at the last row that differs from the row (or state) before it
        prev = np.empty_like(reg)
        prev[1:] = reg[:-1]
        prev[starts] = r_init
        change_at = np.where(reg != prev, np.arange(reg.size), -1)
        last_change = np.maximum.reduceat(change_at, starts) if reg.size else change_at
        changed = last_change >= 0
        r0 = np.where(changed, reg[np.maximum(last_change, 0)], r_init)
        t0 = np.where(changed, ts[np.maximum(last_change, 0)], t_init)
        since.update(zip(keys, zip(r0.tolist(), t0.tolist(), strict=True), strict=True))
        moving = (reg[ends - 1] > reg[starts]) | (ts[ends - 1] - t0 < self.params["min_hours"] * 3600)
        dev_place = place[starts]
        per_place: dict[int, list[int]] = {}
        for p, m in zip(dev_place.tolist(), moving.tolist(), strict=True):
            per_place.setdefault(p, [0, 0])
            per_place[p][0] += 1
            per_place[p][1] += int(m)
        findings = []
        hours_all = (ts[ends - 1] - t0) / 3600.0
        for i in np.flatnonzero(hours_all >= self.params["min_hours"]).tolist():
            d = int(devices[i])
            count, consuming = per_place[int(dev_place[i])]
            others = count - 1
            if not others:
                continue
            share = (consuming - int(moving[i])) / others
            if share >= self.params["neighbour_share"]:
                findings.append(Finding(d, "warning", {"hours_unchanged": round(float(hours_all[i]), 1),
                                                       "register_milli": float(r0[i]), "neighbours": others,
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
        for d, s, e in _with_problems(devices, starts, ends, bad):
            idx = np.flatnonzero(bad[s:e]) + s
            if idx.size:
                worst = idx[np.argmax(rate[idx])]
                findings.append(Finding(int(d), "warning", {
                    "jumps": int(idx.size), "largest_rate_milli_per_h": float(rate[worst]),
                    "capacity_milli_per_h": float(cap[worst]), "seq": int(batch["seq"][worst])}))
        return findings, _remember(dev, ts, reg, state)
