"""EV charger detectors (充电桩): meter-register continuity between and within sessions."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from jiliang.engine.detectors.base import Columns, Detector, Finding, State, groups


class ChargerRegisterContinuity(Detector):
    """A session starts below the previous session's end reading (register went back), or its energy is
    not end − start (电能读数不连续).  Columns (sorted by device, then start): ``device``, ``seq``,
    ``meter_start_wh``, ``meter_end_wh``, ``energy_wh``.  State: each charger's last end reading.

    >>> import numpy as np
    >>> b = {"device": np.array([1, 1, 2]), "seq": np.array([1, 2, 1]), "meter_start_wh": np.array([0, 900, 0]),
    ...      "meter_end_wh": np.array([1000, 2000, 500]), "energy_wh": np.array([1000, 1100, 600])}
    >>> sorted((f.device, tuple(sorted(f.evidence["problems"]))) for f in ChargerRegisterContinuity().run(b, {})[0])
    [(1, ('register_backwards',)), (2, ('energy_mismatch',))]
    """

    key = "charger.register_continuity"
    kind = "charger.session"
    title_zh = "充电桩电能读数不连续"
    defaults: ClassVar[dict[str, float]] = {"tolerance_wh": 1.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"tolerance_wh": (0, 1e6)}

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        dev = np.asarray(batch["device"], dtype=np.int64)
        start = np.asarray(batch["meter_start_wh"], dtype=np.float64)
        end = np.asarray(batch["meter_end_wh"], dtype=np.float64)
        energy = np.asarray(batch["energy_wh"], dtype=np.float64)
        tol = self.params["tolerance_wh"]
        last: dict[str, float] = dict(state.get("last_end", {}))
        prev_end = np.full(dev.size, np.nan)
        if dev.size:
            prev_end[1:] = end[:-1]
        devices, starts, ends = groups(dev)
        keys = list(map(str, devices.tolist()))
        prev_end[starts] = [last.get(k, np.nan) for k in keys]
        backwards = np.nan_to_num(prev_end - start, nan=-1.0) > tol
        mismatch = np.abs(energy - (end - start)) > tol
        findings = []
        bad = backwards | mismatch
        hit = np.unique(np.searchsorted(starts, np.flatnonzero(bad), side="right") - 1) if bad.any() else starts[:0]
        for d, s, e in zip(devices[hit].tolist(), starts[hit].tolist(), ends[hit].tolist(), strict=True):
            problems = {}
            b_idx = np.flatnonzero(backwards[s:e]) + s
            m_idx = np.flatnonzero(mismatch[s:e]) + s
            if b_idx.size:
                problems["register_backwards"] = [{"seq": int(batch["seq"][i]), "previous_end_wh": float(prev_end[i]),
                                                   "start_wh": float(start[i])} for i in b_idx[:10]]
            if m_idx.size:
                problems["energy_mismatch"] = [{"seq": int(batch["seq"][i]), "energy_wh": float(energy[i]),
                                                "end_minus_start_wh": float(end[i] - start[i])} for i in m_idx[:10]]
            findings.append(Finding(int(d), "critical", {"problems": problems}))
        last.update(zip(keys, end[ends - 1].tolist(), strict=True))
        return findings, {**state, "last_end": last}


class ChargerOcmfSignature(Detector):
    """A session's OCMF signed meter values do not verify against the charger's registered public key
    (签名数据校验失败), or the charger has no key registered.  Columns: ``device``, ``seq``, ``ocmf``,
    ``public_key`` (the registry's ``public_key_hex``; '' when none).  Sessions without OCMF are skipped.

    >>> import numpy as np
    >>> b = {"device": np.array([1, 2]), "seq": np.array([7, 8]),
    ...      "ocmf": np.array(["OCMF|{}|{}", ""], dtype=object), "public_key": np.array(["", ""], dtype=object)}
    >>> [(f.device, f.evidence["failures"][0]["reason"]) for f in ChargerOcmfSignature().run(b, {})[0]]
    [(1, 'no public key is registered for this charger')]
    """

    key = "charger.ocmf_signature"
    kind = "charger.session"
    title_zh = "充电桩签名计量数据校验失败"

    def run(self, batch: Columns, state: State) -> tuple[list[Finding], State]:
        from jiliang.engine.ocmf import verify_ocmf

        per: dict[int, list[dict[str, object]]] = {}
        ocmf = np.asarray(batch["ocmf"], dtype=object)
        for i in np.flatnonzero(ocmf.astype(bool)).tolist():
            data = str(ocmf[i] or "")
            if not data:
                continue
            key = str(batch["public_key"][i] or "")
            reason = "no public key is registered for this charger" if not key else verify_ocmf(data, key).reason
            if reason:
                per.setdefault(int(batch["device"][i]), []).append({"seq": int(batch["seq"][i]), "reason": reason})
        return [Finding(d, "critical", {"sessions": len(v), "failures": v[:10]}) for d, v in per.items()], state
