"""Household meter detectors (户用水表、燃气表、电能表): reverse flow, stuck register, implausible jumps,
continuous flow (suspected leak).

Columns (sorted by device, then time): ``device``, ``seq``, ``ts`` (seconds since the epoch),
``register_milli``, ``flags`` (bit 1 = reverse).  State per device: the last reading (time, register).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from jiliang.engine.detectors.base import Columns, Detector, Finding, State, groups
from jiliang.engine.detectors.state import DeviceTable

REVERSE_FLAG = 1


LAST = ("ts", "reg")  # the state's "last" table: each device's last reading (time, register)


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
        last = DeviceTable.load(state.get("last"), LAST)
        prev_ts[starts] = last.get(devices, "ts", np.nan)
        prev_reg[starts] = last.get(devices, "reg", np.nan)
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
    devices, _starts, ends = groups(dev)
    last = DeviceTable.load(state.get("last"), LAST).merge(devices, {"ts": ts[ends - 1], "reg": reg[ends - 1]})
    return {**state, "last": last.dump()}


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
        since = DeviceTable.load(state.get("since"), ("reg", "ts"))  # register, and the time it took that value
        devices, starts, ends = groups(dev)
        if not devices.size:
            return [], {**state, "since": since.dump()}
        # each device's register and time before this batch: the state's, else its first row's
        known = since.has(devices)
        r_init = np.where(known, since.get(devices, "reg", np.nan), reg[starts])
        t_init = np.where(known, since.get(devices, "ts", np.nan), ts[starts])
        # the register "took its value" at the last row that differs from the row (or state) before it
        prev = np.empty_like(reg)
        prev[1:] = reg[:-1]
        prev[starts] = r_init
        change_at = np.where(reg != prev, np.arange(reg.size), -1)
        last_change = np.maximum.reduceat(change_at, starts) if reg.size else change_at
        changed = last_change >= 0
        r0 = np.where(changed, reg[np.maximum(last_change, 0)], r_init)
        t0 = np.where(changed, ts[np.maximum(last_change, 0)], t_init)
        since = since.merge(devices, {"reg": r0, "ts": t0})
        moving = (reg[ends - 1] > reg[starts]) | (ts[ends - 1] - t0 < self.params["min_hours"] * 3600)
        dev_place = place[starts]
        # meters and consuming meters per place, for each device's place
        _places, at_place = np.unique(dev_place, return_inverse=True)
        count_at = np.bincount(at_place)[at_place]
        consuming_at = np.bincount(at_place, weights=moving.astype(np.float64))[at_place]
        findings = []
        hours_all = (ts[ends - 1] - t0) / 3600.0
        for i in np.flatnonzero(hours_all >= self.params["min_hours"]).tolist():
            d = int(devices[i])
            count, consuming = int(count_at[i]), int(consuming_at[i])
            others = count - 1
            if not others:
                continue
            share = (consuming - int(moving[i])) / others
            if share >= self.params["neighbour_share"]:
                findings.append(Finding(d, "warning", {"hours_unchanged": round(float(hours_all[i]), 1),
                                                       "register_milli": float(r0[i]), "neighbours": others,
                                                       "neighbours_consuming_share": round(share, 3)}))
        return findings, {**state, "since": since.dump()}


class MeterImplausibleJump(Detector):
    """Consumption between two readings faster than the meter can pass (读数异常跳变).  Column
    ``max_rate_milli_per_h`` gives each row's meter capacity (e.g. Q4 for a water meter).

    >>> import numpy as np
    >>> b = {"device": np.array([1, 1, 2, 2]), "seq": np.array([1, 2, 1, 2]), "ts": np.array([0, 3600, 0, 3600]),
    ...      "register_milli": np.array([1000, 9000, 5000, 5100]), "flags": np.zeros(4),
    ...      "max_rate_milli_per_h": np.array([3125.0] * 4)}
    >>> [(f.device, f.evidence["largest_rate_milli_per_h"]) for f in MeterImplausibleJump().run(b, {})[0]]
    [(1, 8000.0)]
    """

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


FLOW = ("last_ts", "last_reg", "last_seq", "run_start", "run_seq", "readings", "low")


class MeterContinuousFlow(Detector):
    """The register never stops: consumption in every interval for ``min_hours`` (连续流量，疑似漏水).

    A household's use stops for hours every night, so a water meter read hourly shows intervals without
    consumption; one whose every interval shows use for two days on end most likely has a leak (a running
    cistern, a burst pipe behind a wall) or an unmetered tap left open.  Only sub-daily readings can show
    it: an interval longer than ``max_interval_h`` (or a missing reading) ends a run, as does an interval
    with no consumption, so a meter read once a day is never flagged.  The run's duration is the time from
    the reading before its first consuming interval to its latest reading.

    Columns (sorted by device, then time): ``device``, ``ts``, ``seq``, ``register_milli`` (thousandths of the
    register's unit: litres for a water meter in m³).  State per device: the last reading (time, register,
    seq) and, while a run is going on, its start (time, seq), the readings in it and its lowest rate, so
    that runs span batches.  Evidence: the run's hours, its lowest rate (``min_rate_milli_per_h``: L/h for
    water), the readings in it and the seq of its first and latest reading.

    >>> import numpy as np
    >>> h = 3600.0
    >>> hours = np.arange(50)
    >>> leak = 1000 + np.cumsum(np.full(50, 4))                       # 4 L every hour, day and night
    >>> night = 1000 + np.cumsum(np.where(hours % 24 < 6, 0, 9))      # nothing between 0 and 6 o'clock
    >>> b = {"device": np.repeat([1, 2], 50), "seq": np.tile(hours, 2), "ts": np.tile(hours * h, 2),
    ...      "register_milli": np.concatenate([leak, night]), "flags": np.zeros(100)}
    >>> [(f.device, f.evidence["hours"], f.evidence["min_rate_milli_per_h"])
    ...  for f in MeterContinuousFlow().run(b, {})[0]]
    [(1, 49.0, 4.0)]
    """

    key = "meter.continuous_flow"
    kind = "meter.reading"
    title_zh = "连续流量（疑似漏水）"
    defaults: ClassVar[dict[str, float]] = {"min_hours": 48.0, "max_interval_h": 3.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"min_hours": (1, 24 * 90), "max_interval_h": (0.01, 24)}

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        dev = np.asarray(batch["device"], dtype=np.int64)
        if not dev.size:
            return [], state
        ts = np.asarray(batch["ts"], dtype=np.float64)
        reg = np.asarray(batch["register_milli"])
        seq = np.asarray(batch["seq"])
        flow = DeviceTable.load(state.get("flow"), FLOW)
        devices, starts, ends = groups(dev)
        # the state's columns per device: last time, register, seq; the open run's start, start seq,
        # readings and lowest rate (NaN when there is none)
        st = np.stack([flow.get(devices, name, np.nan) for name in FLOW], axis=1)
        # each interval's length and consumption (the first row of a device: from the state's last reading)
        step = np.empty_like(ts)
        np.subtract(ts[1:], ts[:-1], out=step[1:])
        step[starts] = ts[starts] - st[:, 0]
        use = np.empty(reg.shape, dtype=np.float64)
        np.subtract(reg[1:], reg[:-1], out=use[1:], dtype=np.float64)
        use[starts] = reg[starts] - st[:, 1]
        # an interval shows flow when it is short enough and the register moved forward (NaN compares false)
        flowing = (step > 0) & (step <= self.params["max_interval_h"] * 3600.0) & (use > 0)
        head = flowing.copy()
        head[1:] &= ~flowing[:-1]
        head[starts] = flowing[starts]
        rows = np.flatnonzero(flowing)
        heads = np.flatnonzero(head[rows])         # positions in ``rows`` where each run starts
        first = rows[heads]                        # the batch row of each run's first interval
        last = rows[np.concatenate((heads[1:], [rows.size])) - 1] if rows.size else rows
        owner = np.searchsorted(starts, first, side="right") - 1  # each run's device (index into ``devices``)
        at_start = first == starts[owner]
        cont = at_start & ~np.isnan(st[owner, 3])  # continues the run open at the end of the last batch
        run_start = np.where(cont, st[owner, 3], ts[first] - step[first])
        run_seq = np.where(cont, st[owner, 4], np.where(at_start, st[owner, 2], seq[np.maximum(first - 1, 0)]))
        intervals = np.diff(np.concatenate((heads, [rows.size])))
        readings = np.where(cont, st[owner, 5] + intervals, intervals + 1)
        rate = use[rows] / (step[rows] / 3600.0)
        low = np.minimum.reduceat(rate, heads) if rows.size else rate
        low = np.where(cont, np.fmin(low, st[owner, 6]), low)
        hours = (ts[last] - run_start) / 3600.0
        findings: dict[int, Finding] = {}
        for i in np.flatnonzero(hours >= self.params["min_hours"]).tolist():
            d = int(devices[owner[i]])
            if d in findings and findings[d].evidence["hours"] >= round(float(hours[i]), 1):
                continue
            findings[d] = Finding(d, "warning", {
                "hours": round(float(hours[i]), 1), "min_rate_milli_per_h": round(float(low[i]), 1),
                "readings": int(readings[i]), "ongoing": bool(last[i] == ends[owner[i]] - 1),
                "seqs": [int(run_seq[i]), int(seq[last[i]])]})
        # the new state: the last reading of every device, and the run still open at its last row
        end = ends - 1
        values = {"last_ts": ts[end], "last_reg": reg[end].astype(np.float64), "last_seq": seq[end].astype(np.float64)}
        open_runs = np.flatnonzero(last == ends[owner] - 1)
        for name, column in zip(FLOW[3:], (run_start, run_seq, readings, low), strict=True):
            v = np.full(devices.size, np.nan)
            v[owner[open_runs]] = column[open_runs]
            values[name] = v
        new = flow.merge(devices, values).dump()
        return list(findings.values()), {**state, "flow": new}
