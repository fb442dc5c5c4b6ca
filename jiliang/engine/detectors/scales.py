"""Scale detectors (计价秤): amount arithmetic, software checksum, adjustments outside verification, re-weigh
shortfall and zero drift at the fair scale."""

from __future__ import annotations

import datetime as dt
from itertools import chain
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from jiliang.engine.detectors.base import Columns, Detector, Finding, State, groups


class ScaleAmountMismatch(Detector):
    """Amount ≠ unit price × net weight beyond rounding (金额计算错误): a scale that charges more than it shows.

    Columns (sorted by device): ``device``, ``seq``, ``net_g``, ``unit_price_fen_per_kg``, ``amount_fen``.

    >>> import numpy as np
    >>> d = ScaleAmountMismatch()
    >>> b = {"device": np.array([1, 1, 2]), "seq": np.array([1, 2, 1]), "net_g": np.array([500, 1000, 250]),
    ...      "unit_price_fen_per_kg": np.array([1600, 1600, 2000]), "amount_fen": np.array([800, 1700, 500])}
    >>> [(f.device, f.evidence["mismatches"]) for f in d.run(b, {})[0]]
    [(1, 1)]
    """

    key = "scale.amount_mismatch"
    kind = "scale.txn"
    title_zh = "计价金额与单价×重量不符"
    defaults: ClassVar[dict[str, float]] = {"tolerance_fen": 1.0, "min_count": 1.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"tolerance_fen": (0, 1000), "min_count": (1, 10000)}

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        dev = np.asarray(batch["device"], dtype=np.int64)
        expected = np.rint(np.asarray(batch["net_g"], dtype=np.float64)
                           * np.asarray(batch["unit_price_fen_per_kg"], dtype=np.float64) / 1000.0)
        diff = np.asarray(batch["amount_fen"], dtype=np.float64) - expected
        bad = np.abs(diff) > self.params["tolerance_fen"]
        findings: list[Finding] = []
        devices, starts, ends = groups(dev)
        hit = np.unique(np.searchsorted(starts, np.flatnonzero(bad), side="right") - 1)
        for d, s, e in zip(devices[hit], starts[hit], ends[hit], strict=True):
            idx = np.flatnonzero(bad[s:e]) + s
            if idx.size >= self.params["min_count"]:
                over = float(diff[idx].sum())
                findings.append(Finding(int(d), "critical" if over > 0 else "warning", {
                    "mismatches": int(idx.size), "transactions": int(e - s), "overcharged_fen": over,
                    "examples": [{"seq": int(batch["seq"][i]), "net_g": int(batch["net_g"][i]),
                                  "unit_price_fen_per_kg": int(batch["unit_price_fen_per_kg"][i]),
                                  "amount_fen": int(batch["amount_fen"][i]), "expected_fen": int(expected[i])}
                                 for i in idx[:5]]}))
        return findings, state


class ScaleSoftwareChecksum(Detector):
    """The software checksum a scale reports differs from the one filed in the registry (软件校验和不符).

    Columns: ``device``, ``seq``, ``sw_hash`` (reported, '' when the event carries none), ``filed_sw_hash``.

    >>> import numpy as np
    >>> b = {"device": np.array([1, 2]), "seq": np.array([5, 6]), "sw_hash": np.array(["aa", "bb"], dtype=object),
    ...      "filed_sw_hash": np.array(["aa", "cc"], dtype=object)}
    >>> [(f.device, f.evidence["reported"]) for f in ScaleSoftwareChecksum().run(b, {})[0]]
    [(2, 'bb')]
    """

    key = "scale.software_checksum"
    kind = "scale.event"
    title_zh = "软件校验和与备案不符"

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        reported = np.asarray(batch["sw_hash"], dtype=object)
        filed = np.asarray(batch["filed_sw_hash"], dtype=object)
        differs = np.char.lower(reported.astype(str)) != np.char.lower(filed.astype(str))
        bad = (reported != "") & (filed != "") & differs
        findings: dict[int, Finding] = {}
        for i in np.flatnonzero(bad):
            d = int(batch["device"][i])
            findings[d] = Finding(d, "critical", {"reported": str(reported[i]), "filed": str(filed[i]),
                                                  "seq": int(batch["seq"][i])})
        return list(findings.values()), state


class ScaleUnauthorizedEvent(Detector):
    """Calibration, parameter change or seal opening outside an authorized verification (非授权调校/破封).

    Columns: ``device``, ``seq``, ``event``, ``days_from_verification`` (distance in days to the nearest
    recorded verification of the device; ``inf`` when none).

    >>> import numpy as np
    >>> b = {"device": np.array([1, 2, 3]), "seq": np.array([1, 1, 1]),
    ...      "event": np.array(["calibration", "seal_open", "zero"], dtype=object),
    ...      "days_from_verification": np.array([0.2, np.inf, np.inf])}
    >>> [(f.device, f.evidence["events"][0]["event"]) for f in ScaleUnauthorizedEvent().run(b, {})[0]]
    [(2, 'seal_open')]
    """

    key = "scale.unauthorized_event"
    kind = "scale.event"
    title_zh = "检定以外的校准、参数修改或破封"
    defaults: ClassVar[dict[str, float]] = {"window_days": 1.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"window_days": (0, 30)}
    WATCHED = ("calibration", "param_change", "seal_open")

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        ev = np.asarray(batch["event"], dtype=object)
        watched = np.isin(ev, self.WATCHED)
        outside = np.asarray(batch["days_from_verification"], dtype=np.float64) > self.params["window_days"]
        per: dict[int, list[dict[str, Any]]] = {}
        for i in np.flatnonzero(watched & outside):
            per.setdefault(int(batch["device"][i]), []).append({"seq": int(batch["seq"][i]), "event": str(ev[i])})
        sev = {True: "critical", False: "warning"}
        return [Finding(d, sev[any(e["event"] == "seal_open" for e in events)], {"events": events[:20],
                                                                                   "count": len(events)})
                for d, events in per.items()], state


class ScaleRecheckShortfall(Detector):
    """Re-weigh shortfall at the market's fair scale (公平秤复秤短秤), as a one-sided CUSUM per stall.

    Each re-weigh gives the relative shortfall ``x = (claimed − actual) / actual`` in percent.  The CUSUM
    ``S = max(0, S + x − reference_pct)`` accumulates evidence that the stall's scale shows more than the
    goods weigh; an alarm is raised when ``S > threshold_pct``.  An honest scale's re-weighs differ only by
    rounding (well under ``reference_pct``), so ``S`` stays at zero; a scale inflating by 5 % crosses the
    default threshold with a single re-weigh, one inflating by 3 % within three.  Loads below
    ``min_load_g`` (the scale's minimum capacity, 20 e) are ignored: rounding dominates there.
    Columns (sorted by device, then time): ``device``, ``ts``, ``claimed_g``, ``actual_g``.  State: ``S``
    and the count of re-weighs per device.

    >>> import numpy as np
    >>> b = {"device": np.array([1, 1, 2, 2]), "ts": np.arange(4.0),
    ...      "claimed_g": np.array([505, 500, 1060, 850]), "actual_g": np.array([500, 500, 1000, 800])}
    >>> [(f.device, f.evidence["rechecks"]) for f in ScaleRecheckShortfall().run(b, {})[0]]
    [(2, 2)]
    """

    key = "scale.recheck_shortfall"
    kind = "scale.recheck"
    title_zh = "公平秤复秤短秤（疑似作弊）"
    defaults: ClassVar[dict[str, float]] = {"reference_pct": 1.5, "threshold_pct": 2.5, "min_load_g": 100.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"reference_pct": (0, 50), "threshold_pct": (0.1, 100),
                                                        "min_load_g": (0, 100000)}

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        dev = np.asarray(batch["device"], dtype=np.int64)
        claimed = np.asarray(batch["claimed_g"], dtype=np.float64)
        actual = np.asarray(batch["actual_g"], dtype=np.float64)
        usable = actual >= self.params["min_load_g"]
        x = np.where(usable, (claimed - np.maximum(actual, 1.0)) / np.maximum(actual, 1.0) * 100.0, 0.0)
        cusum: dict[str, list[float]] = {k: list(v) for k, v in state.get("cusum", {}).items()}
        findings = []
        devices, starts, ends = groups(dev)
        for d, s, e in zip(devices, starts, ends, strict=True):
            key = str(int(d))
            total, count, peak = cusum.get(key, [0.0, 0.0, 0.0])
            alarm = False
            for i in range(s, e):
                if not usable[i]:
                    continue
                total = max(0.0, total + x[i] - self.params["reference_pct"])
                count += 1
                peak = max(peak, total)
                alarm = alarm or total > self.params["threshold_pct"]
            cusum[key] = [total, count, peak]
            if alarm:
                used = x[s:e][usable[s:e]]
                findings.append(Finding(int(d), "critical", {
                    "rechecks": int(used.size), "mean_shortfall_pct": round(float(used.mean()), 3),
                    "largest_shortfall_pct": round(float(used.max()), 3), "cusum_pct": round(total, 3),
                    "examples": [{"claimed_g": int(claimed[i]), "actual_g": int(actual[i])}
                                 for i in np.flatnonzero(usable[s:e])[-5:] + s]}))
        return findings, {**state, "cusum": cusum}


DAY_S = 86400.0
LOCAL_OFFSET_S = 8 * 3600.0  # 北京时间 (UTC+8): a day bucket is one local market day
_BUCKET = 7  # day, n, Σx, Σy, Σxx, Σxy, Σyy


class ScaleZeroDrift(Detector):
    """Zero drift (零点漂移) of a stall's scale, seen in the fair scale's re-weighs (公平秤复秤).

    A scale whose zero has shifted shows every load heavier (or lighter) by the same number of grams; a
    span (量程) error or cheating inflation grows with the load instead.  With ``x`` the true weight
    (``actual_g``) and ``y = claimed_g − actual_g`` the re-weigh's difference, each stall's re-weighs are
    fitted by least squares to ``y = a + b·x``: ``a`` is the zero offset (零点偏移, grams) and ``b`` the span
    error (示值比例误差).  An alarm is raised when the offset lies beyond ``max_offset_g`` by more than
    ``z`` standard errors (``|a| − z·SE(a) > max_offset_g``), using at least ``min_rechecks`` re-weighs.

    Thresholds: a 15 kg scale of class III with e = 5 g (the markets' usual model) has an in-service MPE
    (使用中检验最大允许误差, JJG 539: twice the initial one) of ±1 e = 5 g up to 500 e (2.5 kg, most
    purchases) and ±2 e = 10 g up to 2,000 e; zero setting itself must be within ±0.25 e.  An offset beyond
    10 g therefore puts every load up to 10 kg outside the in-service MPE by the offset alone.  The noise
    of a re-weigh is the displayed weight's rounding (uniform over one display step ``resolution_g``), so
    the residual variance is never taken below ``resolution_g² / 12`` (fits of a handful of re-weighs
    would otherwise look more certain than rounding allows).

    State: per stall, the least-squares sufficient statistics (n, Σx, Σy, Σxx, Σxy, Σyy) of each local
    day with re-weighs within the last ``window_days`` days.  Sums over one long history would dilute a
    zero shift that starts after weeks of correct weighing (and the mixture of the two would inflate the
    residuals), so the fit is made on every suffix of the window — the last day, the last two days, … —
    and the most significant suffix is reported: the suffix starting on the day of the shift holds only
    shifted re-weighs.  Columns (sorted by device, then time): ``device``, ``ts``, ``claimed_g``,
    ``actual_g``.

    >>> import numpy as np
    >>> day = 86400.0
    >>> actual = np.array([312, 648, 1207, 483, 2096, 911, 702, 1493, 356, 1018])
    >>> b = {"device": np.repeat([1, 2], 5), "ts": np.tile(np.arange(5) * day, 2),
    ...      "actual_g": actual,
    ...      "claimed_g": np.concatenate([np.round((actual[:5] + 20) / 5) * 5,      # zero offset +20 g
    ...                                   np.round(actual[5:] * 1.05 / 5) * 5])}   # 5 % proportional
    >>> [(f.device, f.evidence["offset_g"], f.evidence["offset_ci95_g"], f.evidence["slope_pct"])
    ...  for f in ScaleZeroDrift().run(b, {})[0]]
    [(1, 20.7, [17.2, 24.2], -0.092)]
    """

    key = "scale.zero_drift"
    kind = "scale.recheck"
    title_zh = "计价秤零点漂移"
    defaults: ClassVar[dict[str, float]] = {"max_offset_g": 10.0, "z": 3.0, "min_rechecks": 5.0,
                                            "max_slope_pct": 2.0, "window_days": 14.0, "resolution_g": 5.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"max_offset_g": (0, 1000), "z": (0, 10),
                                                        "min_rechecks": (3, 1000), "max_slope_pct": (0, 100),
                                                        "window_days": (1, 90),
                                                        "resolution_g": (0, 100)}

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        claimed = np.asarray(batch["claimed_g"], dtype=np.float64)
        actual = np.asarray(batch["actual_g"], dtype=np.float64)
        usable = (actual > 0) & (claimed > 0) & np.isfinite(claimed) & np.isfinite(actual)
        dev = np.asarray(batch["device"], dtype=np.int64)[usable]
        if not dev.size:
            return [], state
        x = actual[usable]
        y = claimed[usable] - x
        day = np.floor((np.asarray(batch["ts"], dtype=np.float64)[usable] + LOCAL_OFFSET_S) / DAY_S)
        # the batch's sums per (stall, day): rows are sorted by device, then time
        new_dev, new_day, new_sums = _day_sums(dev, day, np.stack([np.ones_like(x), x, y, x * x, x * y, y * y],
                                                                    axis=1))
        # with the stored days of the same stalls, merged (a day may continue across batches) and pruned
        stored: dict[str, list[float]] = state.get("days", {})
        devices = np.unique(new_dev)
        keys = list(map(str, devices.tolist()))
        flat = [stored.get(k, []) for k in keys]
        counts = np.fromiter((len(f) // _BUCKET for f in flat), dtype=np.intp, count=len(flat))
        old = np.fromiter(chain.from_iterable(flat), dtype=np.float64, count=int(counts.sum()) * _BUCKET
                          ).reshape(-1, _BUCKET)
        all_dev = np.concatenate([np.repeat(devices, counts), new_dev])
        all_day = np.concatenate([old[:, 0], new_day])
        order = np.lexsort((all_day, all_dev))
        b_dev, b_day, sums = _day_sums(all_dev[order], all_day[order],
                                       np.concatenate([old[:, 1:], new_sums])[order])
        _g, starts, ends = groups(b_dev)
        latest = np.repeat(b_day[ends - 1], ends - starts)
        keep = b_day > latest - self.params["window_days"]
        b_dev, b_day, sums = b_dev[keep], b_day[keep], sums[keep]
        devs, starts, ends = groups(b_dev)
        # every suffix of each stall's window: the sums from each day to its last day
        cum = np.cumsum(sums, axis=0)
        total = np.repeat(cum[ends - 1], ends - starts, axis=0)
        suffix = total - cum + sums
        fit = _intercept_fit(suffix, self.params["resolution_g"])
        a, se = fit["a"], fit["se"]
        ok = ((suffix[:, 0] >= self.params["min_rechecks"]) & np.isfinite(se)
              & (np.abs(fit["b"]) * 100 <= self.params["max_slope_pct"]))
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = np.nan_to_num(np.where(ok, (np.abs(a) - self.params["max_offset_g"]) / se, -np.inf),
                                   nan=-np.inf)
        findings = []
        hit = np.unique(np.searchsorted(starts, np.flatnonzero(excess > self.params["z"]), side="right") - 1)
        for d, s, e in zip(devs[hit].tolist(), starts[hit].tolist(), ends[hit].tolist(), strict=True):
            k = s + int(np.argmax(excess[s:e]))
            off, err, n = float(a[k]), float(se[k]), int(suffix[k, 0])
            rows = np.arange(np.searchsorted(dev, d), np.searchsorted(dev, d, side="right"))[-5:]
            findings.append(Finding(d, "critical" if off > 0 else "warning", {
                "offset_g": round(off, 1), "offset_se_g": round(err, 2),
                "offset_ci95_g": [round(off - 1.96 * err, 1), round(off + 1.96 * err, 1)],
                "slope_pct": round(float(fit["b"][k]) * 100, 3), "rechecks": n,
                "days": int(b_day[e - 1] - b_day[k]) + 1, "since": _local_date(b_day[k]),
                "max_offset_g": self.params["max_offset_g"],
                "examples": [{"claimed_g": round(float(x[i] + y[i])), "actual_g": round(float(x[i]))} for i in rows]}))
        # the new state: each stall's days within the window, flattened
        values = np.concatenate([b_day[:, None], sums], axis=1).ravel().tolist()
        days = dict(stored)
        days.update(zip(map(str, devs.tolist()),
                        (values[s * _BUCKET : e * _BUCKET] for s, e in zip(starts.tolist(), ends.tolist(),
                                                                          strict=True)), strict=True))
        return findings, {**state, "days": days}


def _day_sums(dev: npt.NDArray[np.int64], day: npt.NDArray[np.float64], values: npt.NDArray[np.float64]
              ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Rows sorted by (device, day) summed per (device, day): the keys and the sums."""
    if not dev.size:
        return dev, day, values
    change = np.flatnonzero((np.diff(dev) != 0) | (np.diff(day) != 0)) + 1
    starts = np.concatenate(([0], change))
    return dev[starts], day[starts], np.add.reduceat(values, starts, axis=0)


def _intercept_fit(s: npt.NDArray[np.float64], resolution: float) -> dict[str, npt.NDArray[np.float64]]:
    """Least squares ``y = a + b·x`` from rows of sums (n, Σx, Σy, Σxx, Σxy, Σyy): ``a``, ``b`` and the
    standard error of ``a`` (``inf`` when the loads do not vary or there are fewer than three points)."""
    n, sx, sy, sxx, sxy, syy = s.T
    with np.errstate(divide="ignore", invalid="ignore"):
        cxx = sxx - sx * sx / n
        cxy = sxy - sx * sy / n
        cyy = syy - sy * sy / n
        b = np.where(cxx > 0, cxy / cxx, 0.0)
        a = (sy - b * sx) / n
        rss = np.maximum(cyy - b * cxy, 0.0)
        s2 = np.maximum(rss / (n - 2), resolution * resolution / 12.0)
        se = np.sqrt(s2 * (1.0 / n + (sx / n) ** 2 / cxx))
        se = np.where((cxx > 1e-9 * np.maximum(sxx, 1.0)) & (n > 2), se, np.inf)
    return {"a": a, "b": b, "se": se}


def _local_date(day: float) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()
