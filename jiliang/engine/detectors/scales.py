"""Scale detectors (计价秤): amount arithmetic, software checksum, adjustments outside verification."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

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
