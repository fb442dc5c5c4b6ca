"""Fuel dispenser estimates from stored telemetry (``jiliang estimate dispensers``, SPEC 3.4).

Reads the stored sales (加油记录), tank gauge readings (液位仪读数) and deliveries (卸油记录) of the last
``window_days`` before the latest gauge reading, fits every tank (油罐) with
:func:`jiliang.engine.estimators.dispensers.estimate_fleet` and returns one object per nozzle (加油枪)
with sales in the window.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from django.utils import timezone

from jiliang.engine.estimators.dispensers import DRIFT_STEP_H, TankEstimate, estimate_fleet
from jiliang.engine.rules import limits_for, load_tables
from jiliang.monitoring.models import DispenserSale, TankDelivery, TankReading
from jiliang.registry.models import Instrument, Place

WINDOW_DAYS = 30


def _num(x: float, digits: int) -> float | None:
    """JSON-safe rounding: NaN (not estimable) becomes null."""
    return None if not math.isfinite(x) else round(float(x), digits)


def _mpe(cls: str, tables: dict[str, Any], cache: dict[str, float]) -> float:
    """The in-service MPE of a fuel dispenser class, in percent (class 0.3 when the class is unknown)."""
    if cls not in cache:
        request = {"instrument_type": "fuel_dispenser", "accuracy_class": cls or "0.3", "stage": "in_service",
                   "points": [{"error_pct": 0}]}
        try:
            cache[cls] = float(limits_for(request, tables).upper[0])
        except ValueError:
            cache[cls] = float(limits_for({**request, "accuracy_class": "0.3"}, tables).upper[0])
    return cache[cls]


def dispenser_estimates(*, window_days: int = WINDOW_DAYS, drift_days: int | None = None,
                        until: dt.datetime | None = None) -> list[dict[str, Any]]:
    """One object per nozzle with sales in the window, sorted by device: SPEC 3.4 ``device``, ``error_pct``
    (+ = the nozzle shows more than it delivers; its current error — since the drift if one was found),
    ``ci95_pct``, ``sessions`` (sales), ``exceeds_mpe`` (only when the whole interval lies outside the
    in-service MPE); and ``mpe_pct``, ``place``, ``tank``, ``drift_pct``, ``drift_ci95_pct``, ``drift_since``
    (when the largest change found started), ``drift_p`` (its attribution to this nozzle), ``drift_flagged``,
    and the tank's ``leak_l_per_h``, ``leak_ci95``, ``leak_detected`` and ``tank_noise_sd_l`` (the balance's
    scatter per reading: a few litres; tens or hundreds mean the records do not add up — a missing
    delivery or nozzle).  Values that cannot be estimated are null.  ``until`` defaults to the latest
    gauge reading; ``drift_days`` limits how far back a drift may start (default: the whole window)."""
    if window_days < 2 or (drift_days is not None and drift_days < 1):
        raise ValueError("window_days must be at least 2 and drift_days at least 1")
    end = until or TankReading.objects.order_by("-ts").values_list("ts", flat=True).first()
    if end is None:
        return []
    start = end - dt.timedelta(days=window_days)
    nozzles = list(Instrument.objects.filter(instrument_type_id="fuel_dispenser", place__isnull=False)
                   .exclude(tank="").order_by("id")
                   .values_list("id", "device_id", "place_id", "tank", "accuracy_class"))
    if not nozzles:
        return []
    tank_index: dict[tuple[int, str], int] = {}
    for _pk, _dev, place, tank, _cls in nozzles:
        tank_index.setdefault((place, tank), len(tank_index))
    nozzle_index = {pk: i for i, (pk, *_rest) in enumerate(nozzles)}
    nozzle_tank = np.array([tank_index[(place, tank)] for _pk, _dev, place, tank, _cls in nozzles], dtype=np.int64)

    def hours(ts: dt.datetime) -> float:
        return (ts - start).total_seconds() / 3600.0

    r_tank, r_h, r_l, r_temp = [], [], [], []
    for place, tank, ts, ml, temp in (TankReading.objects.filter(ts__gte=start, ts__lte=end)
                                      .values_list("place_id", "tank", "ts", "volume_ml", "temp_c")
                                      .iterator(chunk_size=20000)):
        i = tank_index.get((place, tank))
        if i is not None:
            r_tank.append(i)
            r_h.append(hours(ts))
            r_l.append(ml / 1000.0)
            r_temp.append(temp)
    d_tank, d_h = [], []
    for place, tank, ts in (TankDelivery.objects.filter(ts__gte=start, ts__lte=end)
                            .values_list("place_id", "tank", "ts")):
        i = tank_index.get((place, tank))
        if i is not None:
            d_tank.append(i)
            d_h.append(hours(ts))
    s_noz, s_h, s_l = [], [], []
    for dev, ts, ml in (DispenserSale.objects.filter(ts__gte=start, ts__lte=end)
                        .values_list("device_id", "ts", "volume_ml").iterator(chunk_size=50000)):
        n = nozzle_index.get(dev)
        if n is not None:
            s_noz.append(n)
            s_h.append(hours(ts))
            s_l.append(ml / 1000.0)
    fits = estimate_fleet(nozzle_tank=nozzle_tank, reading_tank=r_tank, reading_h=r_h, gauge_l=r_l, temp_c=r_temp,
                          delivery_tank=d_tank, delivery_h=d_h, sale_nozzle=s_noz, sale_h=s_h, sale_l=s_l,
                          drift_window_h=None if drift_days is None else drift_days * 24.0, drift_step_h=DRIFT_STEP_H)
    places = dict(Place.objects.filter(pk__in={p for p, _t in tank_index}).values_list("id", "key"))
    tables = load_tables()
    cache: dict[str, float] = {}
    out: list[dict[str, Any]] = []
    for est in fits:
        out += _rows(est, nozzles, places, start, lambda cls: _mpe(cls, tables, cache))
    return sorted(out, key=lambda r: r["device"])


def _rows(est: TankEstimate, nozzles: list[tuple[int, str, int, str, str]], places: dict[int, str],
          start: dt.datetime, mpe_of: Callable[[str], float]) -> list[dict[str, Any]]:
    leak = {"leak_l_per_h": _num(est.leak_l_per_h, 3), "leak_ci95": _num(est.leak_ci95, 3),
            "leak_detected": est.leak_detected(), "tank_noise_sd_l": _num(est.noise_sd_l, 2)}
    rows = []
    for j, n in enumerate(est.nozzles):
        if est.sales[j] == 0:
            continue
        _pk, device, place, tank, cls = nozzles[int(n)]
        mpe = mpe_of(cls)
        since = est.drift_from_h[j]
        rows.append({
            "device": device, "error_pct": _num(est.error_pct[j], 4), "ci95_pct": _num(est.ci95_pct[j], 4),
            "sessions": int(est.sales[j]), "exceeds_mpe": bool(est.exceeds(mpe)[j]), "mpe_pct": mpe,
            "place": places.get(place, str(place)), "tank": tank,
            "drift_pct": _num(est.drift_pct[j], 4), "drift_ci95_pct": _num(est.drift_ci95_pct[j], 4),
            "drift_since": None if not math.isfinite(since)
            else timezone.localtime(start + dt.timedelta(hours=float(since))).isoformat(timespec="seconds"),
            "drift_p": _num(est.drift_p[j], 3), "drift_flagged": bool(est.drift_flagged[j]), **leak})
    return rows
