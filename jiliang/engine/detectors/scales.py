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
        for d, s, e in zip(devices, starts, ends, strict=True):
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
