"""Zero drift (零点漂移) of stall scales and continuous flow (连续流量) of household meters: hand-built cases
whose answer is known, and the vectorised detectors against per-row reference loops across batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from jiliang.engine.detectors import REGISTRY
from jiliang.engine.detectors.meters import MeterContinuousFlow
from jiliang.engine.detectors.scales import LOCAL_OFFSET_S, ScaleZeroDrift
from jiliang.engine.detectors.state import DeviceTable

H = 3600.0
DAY = 86400.0
LOADS = np.array([312, 648, 1207, 483, 2096, 911, 702, 1493, 356, 1018, 275, 1760])


def test_both_are_registered() -> None:
    assert REGISTRY["scale.zero_drift"] is ScaleZeroDrift and ScaleZeroDrift.kind == "scale.recheck"
    assert REGISTRY["meter.continuous_flow"] is MeterContinuousFlow and MeterContinuousFlow.kind == "meter.reading"


# ------------------------------------------------------------------------------------------- zero drift

def rechecks(device: int, loads: np.ndarray, *, offset: float = 0.0, slope: float = 0.0, day0: int = 0,
             per_day: int = 1) -> dict[str, np.ndarray]:
    """Re-weighs of one stall, ``per_day`` a day from ``day0`` at 09:00 local time, the stall's scale showing
    ``true · (1 + slope) + offset`` rounded to 5 g."""
    k = np.arange(loads.size)
    ts = (day0 + k // per_day) * DAY - LOCAL_OFFSET_S + 9 * H + (k % per_day) * 600
    return {"device": np.full(loads.size, device), "ts": ts.astype(np.float64), "actual_g": loads,
            "claimed_g": (np.round((loads * (1 + slope) + offset) / 5) * 5).astype(np.int64)}


def concat(*batches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_a_zero_offset_is_found_with_its_interval() -> None:
    findings, _ = ScaleZeroDrift().run(rechecks(4, LOADS[:6], offset=25), {})
    [f] = findings
    ev = f.evidence
    assert f.device == 4 and f.severity == "critical"
    assert abs(ev["offset_g"] - 25) < 2.5 and ev["offset_ci95_g"][0] < 25 < ev["offset_ci95_g"][1]
    # the most significant run of recent days is reported: here the last five or all six
    assert abs(ev["slope_pct"]) < 0.3 and ev["rechecks"] in (5, 6) and ev["days"] == ev["rechecks"]
    assert ev["offset_se_g"] > 0 and len(ev["examples"]) == 5


def test_a_negative_offset_is_a_warning() -> None:
    [f] = ScaleZeroDrift().run(rechecks(4, LOADS[:6], offset=-30), {})[0]
    assert f.severity == "warning" and abs(f.evidence["offset_g"] + 30) < 2.5


@pytest.mark.parametrize("slope", [0.005, 0.01, 0.03, 0.10, 0.30, -0.02])
def test_proportional_errors_are_not_zero_drift(slope: float) -> None:
    """Span errors and cheating inflation grow with the load: no offset, however many re-weighs."""
    loads = np.tile(LOADS, 3)
    assert ScaleZeroDrift().run(rechecks(1, loads, slope=slope, per_day=3), {})[0] == []


def test_an_offset_within_tolerance_or_with_too_few_rechecks_is_not_flagged() -> None:
    assert ScaleZeroDrift().run(rechecks(1, LOADS, offset=5), {})[0] == []     # within ±10 g
    assert ScaleZeroDrift().run(rechecks(1, LOADS[:4], offset=40), {})[0] == []  # four re-weighs
    assert ScaleZeroDrift(min_rechecks=4).run(rechecks(1, LOADS[:4], offset=40), {})[0] != []


def test_an_offset_starting_after_weeks_of_correct_weighing_is_found_by_the_recent_days() -> None:
    """Ten correct days then five shifted ones: the fit over the last five days holds only shifted
    re-weighs (a fit over all fifteen would see a third of the offset)."""
    before = rechecks(2, np.tile(LOADS, 2)[:20], per_day=2)
    after = rechecks(2, LOADS[:5], offset=30, day0=10)
    [f] = ScaleZeroDrift().run(concat(before, after), {})[0]
    assert f.evidence["rechecks"] == 5 and f.evidence["days"] == 5 and abs(f.evidence["offset_g"] - 30) < 2.5


def test_state_spans_batches_and_forgets_old_days() -> None:
    det = ScaleZeroDrift()
    first, state = det.run(rechecks(3, LOADS[:3], offset=30), {})
    assert first == [] and len(state["days"]["3"]) == 3 * 7
    second, state = det.run(rechecks(3, LOADS[3:6], offset=30, day0=3), state)
    assert len(second) == 1 and second[0].evidence["rechecks"] >= 5 and len(state["days"]["3"]) == 6 * 7
    # a month later only the last window_days (14) days are kept
    _, state = det.run(rechecks(3, LOADS[:1], day0=40), state)
    assert state["days"]["3"][0] == state["days"]["3"][-7] and len(state["days"]["3"]) == 7


def _zero_reference(det: ScaleZeroDrift, batches: list[dict[str, np.ndarray]]) -> list[list[tuple[int, float, int]]]:
    """The zero-drift rule as a per-stall, per-suffix loop with ``np.linalg.lstsq``."""
    p = det.params
    days: dict[int, dict[int, list[tuple[float, float]]]] = {}
    out = []
    for b in batches:
        for d, t, c, a in zip(b["device"].tolist(), b["ts"].tolist(), b["claimed_g"].tolist(), b["actual_g"].tolist(),
                              strict=True):
            day = int(np.floor((t + LOCAL_OFFSET_S) / DAY))
            days.setdefault(d, {}).setdefault(day, []).append((float(a), float(c - a)))
        found = []
        for d in sorted(set(b["device"].tolist())):
            latest = max(days[d])
            days[d] = {k: v for k, v in days[d].items() if k > latest - p["window_days"]}
            best: tuple[float, float, int] | None = None
            for start in sorted(days[d]):
                pts = np.array([xy for k in sorted(days[d]) if k >= start for xy in days[d][k]])
                n = len(pts)
                x, y = pts[:, 0], pts[:, 1]
                if n < p["min_rechecks"] or np.ptp(x) == 0:
                    continue
                design = np.column_stack([np.ones(n), x])
                (a, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
                s2 = max(float(np.sum((y - a - slope * x) ** 2)) / (n - 2), p["resolution_g"] ** 2 / 12)
                se = float(np.sqrt(s2 * np.linalg.inv(design.T @ design)[0, 0]))
                if abs(slope) * 100 > p["max_slope_pct"]:
                    continue
                excess = (abs(a) - p["max_offset_g"]) / se
                if best is None or excess > best[0]:
                    best = (excess, float(a), n)
            if best is not None and best[0] > p["z"]:
                found.append((d, best[1], best[2]))
        out.append(found)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_zero_drift_matches_the_per_suffix_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts: list[list[dict[str, np.ndarray]]] = [[], [], []]
    for d in range(1, 13):
        offset, slope, onset = rng.choice([0, 0, 15, -30, 45]), rng.choice([0, 0, 0.008, 0.05]), rng.integers(0, 20)
        for day in range(24):
            m = int(rng.poisson(1.2))
            if not m:
                continue
            loads = np.maximum(20, rng.lognormal(6.5, 0.7, m)).astype(np.int64)
            b = rechecks(d, loads, offset=offset if day >= onset else 0, slope=slope, day0=day, per_day=m)
            parts[min(day // 8, 2)].append(b)
    det = ScaleZeroDrift(**({"min_rechecks": 4.0, "window_days": 7.0} if seed % 2 else {}))
    batches = [concat(*p) for p in parts if p]
    want = _zero_reference(det, batches)
    state: dict[str, Any] = {}
    for b, expected in zip(batches, want, strict=True):
        findings, state = det.run(b, state)
        got = [(f.device, f.evidence["offset_g"], f.evidence["rechecks"]) for f in findings]
        assert [(d, n) for d, _a, n in got] == [(d, n) for d, _a, n in expected]
        assert all(abs(g[1] - e[1]) < 0.051 for g, e in zip(got, expected, strict=True))
    assert any(want), "the planted offsets are found"


def test_zero_drift_state_does_not_depend_on_how_the_rechecks_are_batched() -> None:
    rng = np.random.default_rng(7)
    days = [rechecks(d, np.maximum(20, rng.lognormal(6.5, 0.7, 3)).astype(np.int64), offset=20 * (d % 2), day0=k,
                     per_day=3) for k in range(10) for d in (1, 2)]
    by_day = [concat(days[2 * k], days[2 * k + 1]) for k in range(10)]
    whole = concat(*by_day)
    order = np.lexsort((whole["ts"], whole["device"]))
    _, at_once = ScaleZeroDrift().run({k: v[order] for k, v in whole.items()}, {})
    state: dict[str, Any] = {}
    for b in by_day:
        _, state = ScaleZeroDrift().run(b, state)
    assert state == at_once


# ------------------------------------------------------------------------------------------- continuous flow

def readings(device: int, use_l: list[float] | np.ndarray, *, every_h: float = 1.0, t0: float = 0.0, seq0: int = 1,
             reg0: float = 100_000) -> dict[str, np.ndarray]:
    """A meter's readings every ``every_h`` hours from ``t0``, the register (in litres) moving by ``use_l``
    between consecutive readings (the first reading is at ``t0``)."""
    use = np.concatenate(([0.0], np.asarray(use_l, dtype=np.float64)))
    n = use.size
    return {"device": np.full(n, device), "ts": t0 + np.arange(n) * every_h * H, "seq": seq0 + np.arange(n),
            "register_milli": (reg0 + np.cumsum(use)).astype(np.int64), "flags": np.zeros(n, dtype=np.int64)}


def household(days: int, leak_l_per_h: float = 0.0) -> np.ndarray:
    """Hourly use: nothing from 0 to 6 o'clock, 20 L an hour in the day, plus the leak."""
    hours = np.arange(days * 24)
    return np.where(hours % 24 < 6, 0.0, 20.0) + leak_l_per_h


def test_a_leak_is_continuous_flow_and_a_household_is_not() -> None:
    b = concat(readings(1, household(3, leak_l_per_h=3)), readings(2, household(3)))
    [f] = MeterContinuousFlow().run(b, {})[0]
    assert f.device == 1 and f.severity == "warning"
    assert f.evidence == {"hours": 72.0, "min_rate_milli_per_h": 3.0, "readings": 73, "ongoing": True,
                          "seqs": [1, 73]}


def _keyed(flow: dict[str, list[Any]]) -> dict[str, list[float]]:
    """The detector's column state as the reference loop keeps it: device -> [last time, register, seq] and,
    while a run is open, its start, start seq, readings and lowest rate."""
    names = ("last_ts", "last_reg", "last_seq", "run_start", "run_seq", "readings", "low")
    table = DeviceTable.load(flow, names)
    out = {}
    for i, d in enumerate(table.devices.tolist()):
        row = [None if np.isnan(v) else v for v in (float(table.fields[n][i]) for n in names)]
        out[str(d)] = row[:3] if row[3] is None else row
    return out


def test_continuous_flow_spans_two_batches_through_the_state() -> None:
    det = MeterContinuousFlow()
    flow = np.full(60, 5.0)
    one = readings(7, flow[:30])                                   # 30 hours: too short
    two = readings(7, flow[31:], t0=31 * H, seq0=32, reg0=100_000 + 155)
    f1, state = det.run(one, {})
    assert f1 == [] and _keyed(state["flow"])["7"][3:] == [0.0, 1.0, 31.0, 5.0]  # open run: start, seq, readings, rate
    f2, state = det.run(two, state)
    assert [(f.device, f.evidence["hours"], f.evidence["readings"], f.evidence["seqs"]) for f in f2] == [
        (7, 60.0, 61, [1, 61])]
    assert len(_keyed(state["flow"])["7"]) == 7


def test_a_night_without_use_ends_the_run() -> None:
    use = np.full(80, 4.0)
    use[40] = 0.0  # one dry hour in the middle: 40 h + 39 h, both below 48 h
    assert MeterContinuousFlow().run(readings(3, use), {})[0] == []
    assert MeterContinuousFlow(min_hours=36).run(readings(3, use), {})[0] != []


def test_daily_readings_are_never_flagged() -> None:
    b = readings(5, np.full(90, 300.0), every_h=24)  # consumption every day for three months
    assert MeterContinuousFlow().run(b, {})[0] == []
    assert MeterContinuousFlow(min_hours=24).run(b, {})[0] == []


def test_a_gap_longer_than_max_interval_ends_the_run() -> None:
    a = readings(6, np.full(30, 5.0))
    b = readings(6, np.full(30, 5.0), t0=34 * H, seq0=32, reg0=100_000 + 170)  # four hours without a reading
    assert MeterContinuousFlow().run(concat(a, b), {})[0] == []
    assert MeterContinuousFlow(max_interval_h=5).run(concat(a, b), {})[0] != []


def _flow_reference(det: MeterContinuousFlow, batches: list[dict[str, np.ndarray]]
                    ) -> tuple[list[list[tuple[int, dict[str, Any]]]], dict[str, list[float]]]:
    """The continuous-flow rule as a per-reading loop: findings per batch and the final state."""
    p = det.params
    last: dict[int, list[float]] = {}
    run: dict[int, list[float] | None] = {}
    out = []
    for b in batches:
        n = b["device"].size
        best: dict[int, dict[str, Any]] = {}
        extended: set[int] = set()  # devices whose run has readings in this batch (a run is reported there)

        def close(d: int, r: list[float] | None, end_ts: float, end_seq: float, ongoing: bool,
                  best: dict[int, dict[str, Any]] = best, extended: set[int] = extended) -> None:
            if r is None or d not in extended:
                return
            hours = (end_ts - r[0]) / 3600
            if hours >= p["min_hours"] and (d not in best or round(hours, 1) > best[d]["hours"]):
                best[d] = {"hours": round(hours, 1), "min_rate_milli_per_h": round(r[3], 1), "readings": int(r[2]),
                           "ongoing": ongoing, "seqs": [int(r[1]), int(end_seq)]}

        for i in range(n):
            d, t = int(b["device"][i]), float(b["ts"][i])
            reg, seq = float(b["register_milli"][i]), float(b["seq"][i])
            prev = last.get(d)
            flowing = prev is not None and 0 < t - prev[0] <= p["max_interval_h"] * 3600 and reg - prev[1] > 0
            if flowing and prev is not None:
                rate = (reg - prev[1]) / ((t - prev[0]) / 3600)
                r = run.get(d)
                run[d] = [prev[0], prev[2], 2.0, rate] if r is None else [r[0], r[1], r[2] + 1, min(r[3], rate)]
                extended.add(d)
            else:
                if prev is not None:
                    close(d, run.get(d), prev[0], prev[2], False)
                run[d] = None
                extended.discard(d)
            last[d] = [t, reg, seq]
            if i == n - 1 or int(b["device"][i + 1]) != d:
                close(d, run.get(d), t, seq, True)
        out.append(sorted(best.items()))
    state = {str(d): v + (run.get(d) or []) for d, v in last.items()}
    return out, state


@pytest.mark.parametrize("seed", range(20))
def test_continuous_flow_matches_the_per_reading_loop(seed: int) -> None:
    """Random meters (some read hourly with leaks, some with gaps, some daily) split into batches at random
    points: the same findings per batch and the same final state as the per-reading loop."""
    rng = np.random.default_rng(seed)
    meters = []
    for d in range(1, 16):
        n = int(rng.integers(1, 200))
        every = rng.choice([0.5, 1.0, 1.0, 2.0, 24.0])
        gaps = np.where(rng.random(n) < 0.02, rng.uniform(2, 6), 1.0) * every
        use = np.where(rng.random(n) < rng.choice([0.0, 0.01, 0.2]), 0, rng.integers(1, 30, n))
        meters.append({"device": np.full(n, d), "ts": 1e6 + np.cumsum(gaps) * H, "seq": np.arange(n) + 1,
                       "register_milli": 10_000 + np.cumsum(use), "flags": np.zeros(n, dtype=np.int64)})
    whole = concat(*meters)
    cut_times = np.sort(rng.uniform(1e6, 1e6 + 200 * H, int(rng.integers(0, 4))))
    pieces = np.searchsorted(cut_times, whole["ts"])
    batches = []
    for k in range(cut_times.size + 1):
        m = pieces == k
        if m.any():
            batches.append({c: v[m] for c, v in whole.items()})
    det = MeterContinuousFlow(**({"min_hours": 12.0} if seed % 2 else {"min_hours": 30.0, "max_interval_h": 2.5}))
    want, want_state = _flow_reference(det, batches)
    state: dict[str, Any] = {}
    for b, expected in zip(batches, want, strict=True):
        findings, state = det.run(b, state)
        assert [(f.device, f.evidence) for f in findings] == expected
    assert _keyed(state["flow"]) == want_state
    assert seed % 2 == 0 or any(want), "the planted runs are found"
