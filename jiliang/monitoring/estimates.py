"""Fleet estimates from stored telemetry (``jiliang estimate chargers``, SPEC 3.4)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from django.utils import timezone

from jiliang.engine.estimators.chargers import estimate
from jiliang.engine.rules import load_tables
from jiliang.monitoring.models import ChargerSession
from jiliang.registry.models import Instrument
from jiliang.verification.models import Verification

ANCHOR_DAYS = 365


def charger_estimates(*, anchor_days: int = ANCHOR_DAYS, anchor_sd_pct: float = 0.3) -> list[dict[str, Any]]:
    """One object per charger with sessions: device, error_pct (+ = over-registers), ci95_pct, sessions,
    exceeds_mpe (only when the whole interval lies outside the in-service MPE of its class), anchored."""
    rows = list(ChargerSession.objects.filter(energy_wh__gt=0, bms_energy_wh__gt=0)
                .values_list("device_id", "vehicle", "energy_wh", "bms_energy_wh"))
    if not rows:
        return []
    dev = np.array([r[0] for r in rows], dtype=np.int64)
    chargers, ch = np.unique(dev, return_inverse=True)
    _vehicles, ve = np.unique(np.array([r[1] for r in rows], dtype=object), return_inverse=True)
    y = np.log(np.array([r[2] for r in rows], dtype=np.float64) / np.array([r[3] for r in rows], dtype=np.float64))
    index = {int(c): i for i, c in enumerate(chargers)}
    since = timezone.localdate() - dt.timedelta(days=anchor_days)
    anchors: dict[int, float] = {}
    for inst_id, points in (Verification.objects.filter(instrument_id__in=index, conforming=True, date__gte=since)
                            .order_by("instrument_id", "date").values_list("instrument_id", "points")):
        errs = [float(p["error_pct"]) for p in points
                if isinstance(p, dict) and isinstance(p.get("error_pct"), int | float)]
        if errs:
            anchors[index[inst_id]] = float(np.mean(errs))  # the latest verification wins (ordered by date)
    est = estimate(charger=ch, vehicle=ve, log_ratio=y, n_chargers=len(chargers), anchors=anchors,
                   anchor_sd_pct=anchor_sd_pct)
    info = {pk: (device_id, itype, cls) for pk, device_id, itype, cls in Instrument.objects.filter(
        pk__in=index).values_list("id", "device_id", "instrument_type_id", "accuracy_class")}
    tables = load_tables()
    mpe = np.array([_mpe(tables, info[int(c)][1], info[int(c)][2]) for c in chargers])
    exceeds = est.exceeds(mpe)
    out = []
    for i, c in enumerate(chargers):
        out.append({"device": info[int(c)][0], "error_pct": round(float(est.error_pct[i]), 4),
                    "ci95_pct": round(float(est.ci95_pct[i]), 4), "sessions": int(est.sessions[i]),
                    "exceeds_mpe": bool(exceeds[i]), "mpe_pct": float(mpe[i]), "anchored": i in anchors})
    return sorted(out, key=lambda r: r["device"])


def _mpe(tables: dict[str, Any], itype: str, cls: str) -> float:
    t = tables[itype]
    base = float(t["classes"].get(cls or "2", t["classes"]["2"]))
    return base * float(t["in_service_factor"]["value"])
