"""Fuel dispensers (加油机) from stored telemetry: the estimates (``jiliang estimate dispensers``, SPEC 3.4)
and the fuel alerts (``jiliang detect``, the worker's periodic job).

Both read the stored sales (加油记录), tank gauge readings (液位仪读数) and deliveries (卸油记录) of the last
``window_days`` before the latest gauge reading and fit every tank (油罐) with
:func:`jiliang.engine.estimators.dispensers.estimate_fleet`.

**Fuel alerts** (:func:`fuel_alerts_run`) are two detectors that, unlike the record-by-record detectors of
:mod:`jiliang.monitoring.detection`, look at the whole window at once (a tank balance is a fit, not a
stream), so they keep no cursor: every run refits the window and opens, updates or leaves alone the alerts.

- ``fuel.tank_leak`` (油罐疑似渗漏), per tank: the leak rate is at least ``leak_threshold_l_per_h`` and its
  one-sided ``1 − leak_alpha`` lower bound is above zero.  A tank is not a registry instrument, so the alert
  is attached to the tank's first nozzle (lowest device id; a nozzle draws from one tank only, so this is
  one open alert per tank); the evidence names the tank, its place and all its nozzles, and charts the
  balance (账差: gauge minus book inventory) over time with the fitted leak line.  Critical when the lower
  bound of the 95 % interval reaches ``leak_critical_l_per_h``.
- ``fuel.nozzle_drift`` (加油枪计量漂移或超差), per nozzle: a change of error found by the drift scan names
  it as a suspect (at least ``drift_threshold_pct`` and ``drift_z`` standard errors of the estimator's GLS
  change-point test), or its whole 95 % interval lies outside the in-service MPE (使用中检验最大允许误差).
  The evidence charts the nozzle's apparent error per day.  Critical when the interval lies outside the MPE.

One open alert per instrument and detector, as for every detector: a run whose evidence equals the open
alert's changes nothing (re-running is idempotent); new evidence updates it and counts an occurrence.  A
finding whose episode (the drift's start, the MPE excess, the leak) was already confirmed or dismissed
within the window does not reopen an alert.

**Configuration** (validated by :func:`fuel_alert_params`): ``settings.JILIANG_FUEL_ALERTS``, a dict
overriding any of :data:`ALERT_DEFAULTS` — ``window_days`` (30; at least 4), ``leak_threshold_l_per_h``
(0.19: half the 0.38 L/h to be detected), ``leak_alpha`` (0.01), ``leak_critical_l_per_h`` (0.38),
``drift_threshold_pct`` (0.15: half the MPE), ``drift_z`` (4.25), ``mpe_alerts`` (true: also alert on an
estimated error outside the MPE).  An unknown key or a value out of range is an error naming it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop
from scipy.special import ndtri

from jiliang.core.errors import JiliangError, Problem
from jiliang.engine.estimators.dispensers import (
    DRIFT_STEP_H,
    DRIFT_THRESHOLD_PCT,
    DRIFT_Z,
    LEAK_ALPHA,
    LEAK_THRESHOLD_L_PER_H,
    TankEstimate,
    estimate_fleet,
)
from jiliang.engine.rules import limits_for, load_tables
from jiliang.monitoring.models import Alert, DispenserSale, TankDelivery, TankReading
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


Nozzle = tuple[int, str, int, str, str]  # pk, device_id, place id, tank, accuracy class


@dataclass
class _Records:
    """The window's records as flat arrays for :func:`estimate_fleet` (hours since ``start``)."""

    start: dt.datetime
    end: dt.datetime
    nozzles: list[Nozzle]
    nozzle_tank: Any
    tanks: list[tuple[int, str]]
    arrays: dict[str, list[Any]]


def _records(start: dt.datetime, end: dt.datetime) -> _Records | None:
    """Every registered nozzle with its tank, and the readings, deliveries and sales from ``start`` to
    ``end``; None when no nozzle is registered with a tank."""
    nozzles: list[Nozzle] = list(Instrument.objects.filter(instrument_type_id="fuel_dispenser", place__isnull=False)
                                 .exclude(tank="").order_by("id")
                                 .values_list("id", "device_id", "place_id", "tank", "accuracy_class"))
    if not nozzles:
        return None
    tank_index: dict[tuple[int, str], int] = {}
    for _pk, _dev, place, tank, _cls in nozzles:
        tank_index.setdefault((place, tank), len(tank_index))
    nozzle_index = {pk: i for i, (pk, *_rest) in enumerate(nozzles)}
    nozzle_tank = np.array([tank_index[(place, tank)] for _pk, _dev, place, tank, _cls in nozzles], dtype=np.int64)

    def hours(ts: dt.datetime) -> float:
        return (ts - start).total_seconds() / 3600.0

    arr: dict[str, list[Any]] = {k: [] for k in ("r_tank", "r_h", "r_l", "r_temp", "d_tank", "d_h",
                                                 "s_noz", "s_h", "s_l")}
    for place, tank, ts, ml, temp in (TankReading.objects.filter(ts__gte=start, ts__lte=end)
                                      .values_list("place_id", "tank", "ts", "volume_ml", "temp_c")
                                      .iterator(chunk_size=20000)):
        i = tank_index.get((place, tank))
        if i is not None:
            arr["r_tank"].append(i)
            arr["r_h"].append(hours(ts))
            arr["r_l"].append(ml / 1000.0)
            arr["r_temp"].append(temp)
    for place, tank, ts in (TankDelivery.objects.filter(ts__gte=start, ts__lte=end)
                            .values_list("place_id", "tank", "ts")):
        i = tank_index.get((place, tank))
        if i is not None:
            arr["d_tank"].append(i)
            arr["d_h"].append(hours(ts))
    for dev, ts, ml in (DispenserSale.objects.filter(ts__gte=start, ts__lte=end)
                        .values_list("device_id", "ts", "volume_ml").iterator(chunk_size=50000)):
        n = nozzle_index.get(dev)
        if n is not None:
            arr["s_noz"].append(n)
            arr["s_h"].append(hours(ts))
            arr["s_l"].append(ml / 1000.0)
    return _Records(start, end, nozzles, nozzle_tank, list(tank_index), arr)


def _fit(rec: _Records, **options: Any) -> list[TankEstimate]:
    a = rec.arrays
    return estimate_fleet(nozzle_tank=rec.nozzle_tank, reading_tank=a["r_tank"], reading_h=a["r_h"], gauge_l=a["r_l"],
                          temp_c=a["r_temp"], delivery_tank=a["d_tank"], delivery_h=a["d_h"], sale_nozzle=a["s_noz"],
                          sale_h=a["s_h"], sale_l=a["s_l"], drift_step_h=DRIFT_STEP_H, **options)


def _latest_reading(until: dt.datetime | None = None) -> dt.datetime | None:
    qs = TankReading.objects.all() if until is None else TankReading.objects.filter(ts__lte=until)
    latest: dt.datetime | None = qs.order_by("-ts").values_list("ts", flat=True).first()
    return latest


def dispenser_estimates(*, window_days: int = WINDOW_DAYS, drift_days: int | None = None,
                        until: dt.datetime | None = None) -> list[dict[str, Any]]:
    """One object per nozzle with sales in the window, sorted by device: SPEC 3.4 ``device``, ``error_pct``
    (+ = the nozzle shows more than it delivers; its current error — since the drift if one was found),
    ``ci95_pct``, ``sessions`` (sales), ``exceeds_mpe`` (only when the whole interval lies outside the
    in-service MPE); and ``mpe_pct``, ``place``, ``tank``, ``drift_pct``, ``drift_ci95_pct``, ``drift_since``
    (when the largest change found started), ``drift_p`` (its attribution to this nozzle), ``drift_flagged``,
    and the tank's ``leak_l_per_h``, ``leak_ci95``, ``leak_detected`` and ``tank_noise_sd_l`` (the balance's
    scatter per reading: a few litres; tens or hundreds mean the records do not add up — a missing
    delivery or nozzle) and ``tank_reading_minutes`` (the gauge's median reading interval: a drift is found
    sooner with readings every 15 minutes than every hour).  Values that cannot be estimated are null.
    ``until`` defaults to the latest gauge reading; ``drift_days`` limits how far back a drift may start
    (default: the whole window)."""
    if window_days < 2 or (drift_days is not None and drift_days < 1):
        raise ValueError("window_days must be at least 2 and drift_days at least 1")
    end = until or _latest_reading()
    if end is None:
        return []
    start = end - dt.timedelta(days=window_days)
    rec = _records(start, end)
    if rec is None:
        return []
    fits = _fit(rec, drift_window_h=None if drift_days is None else drift_days * 24.0)
    places = dict(Place.objects.filter(pk__in={p for p, _t in rec.tanks}).values_list("id", "key"))
    tables = load_tables()
    cache: dict[str, float] = {}
    out: list[dict[str, Any]] = []
    for est in fits:
        out += _rows(est, rec.nozzles, places, start, lambda cls: _mpe(cls, tables, cache))
    return sorted(out, key=lambda r: r["device"])


def _rows(est: TankEstimate, nozzles: list[Nozzle], places: dict[int, str],
          start: dt.datetime, mpe_of: Callable[[str], float]) -> list[dict[str, Any]]:
    leak = {"leak_l_per_h": _num(est.leak_l_per_h, 3), "leak_ci95": _num(est.leak_ci95, 3),
            "leak_detected": est.leak_detected(), "tank_noise_sd_l": _num(est.noise_sd_l, 2),
            "tank_reading_minutes": _num(est.reading_interval_h * 60, 1)}
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


# ------------------------------------------------------------------------------------------- fuel alerts

LEAK = "fuel.tank_leak"
DRIFT = "fuel.nozzle_drift"
# Titles of the fuel detectors (the record detectors' titles live on their engine classes).
FUEL_DETECTORS: dict[str, str] = {
    LEAK: gettext_noop("油罐疑似渗漏（液位仪对账）"),
    DRIFT: gettext_noop("加油枪计量误差漂移或超差"),
}
ALERT_DEFAULTS: dict[str, Any] = {
    "window_days": WINDOW_DAYS,
    "leak_threshold_l_per_h": LEAK_THRESHOLD_L_PER_H,
    "leak_alpha": LEAK_ALPHA,
    "leak_critical_l_per_h": 0.38,
    "drift_threshold_pct": DRIFT_THRESHOLD_PCT,
    "drift_z": DRIFT_Z,
    "mpe_alerts": True,
}
BALANCE_POINTS = 240  # the leak chart's balance is averaged into at most this many points


@dataclass(frozen=True)
class FuelAlertParams:
    """The fuel alerts' thresholds (see the module docstring)."""

    window_days: int
    leak_threshold_l_per_h: float
    leak_alpha: float
    leak_critical_l_per_h: float
    drift_threshold_pct: float
    drift_z: float
    mpe_alerts: bool


def fuel_alert_params(overrides: Mapping[str, Any] | None = None) -> FuelAlertParams:
    """The defaults, then ``settings.JILIANG_FUEL_ALERTS``, then ``overrides``, validated: every problem is
    reported at once with the key it concerns (``JiliangError`` ``validation_failed``)."""
    merged = dict(ALERT_DEFAULTS)
    problems: list[Problem] = []
    for source in (getattr(settings, "JILIANG_FUEL_ALERTS", None) or {}, overrides or {}):
        for key, value in source.items():
            if key not in ALERT_DEFAULTS:
                problems.append(Problem(row=None, field=str(key), reason="unknown fuel alert parameter"))
            else:
                merged[key] = value
    ranges: dict[str, tuple[float, float]] = {
        "window_days": (4, 366), "leak_threshold_l_per_h": (0.0, 1000.0), "leak_alpha": (1e-6, 0.5),
        "leak_critical_l_per_h": (0.0, 1000.0), "drift_threshold_pct": (0.0, 100.0), "drift_z": (1.0, 100.0)}
    for key, (low, high) in ranges.items():
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(Problem(row=None, field=key, reason="must be a number"))
        elif not low <= value <= high or (key == "window_days" and int(value) != value):
            problems.append(Problem(row=None, field=key, reason=f"must be between {low:g} and {high:g}"
                                    + (" (whole days)" if key == "window_days" else "")))
    if not isinstance(merged["mpe_alerts"], bool):
        problems.append(Problem(row=None, field="mpe_alerts", reason="must be true or false"))
    if problems:
        raise JiliangError("the fuel alert configuration is invalid", code="validation_failed", details=problems)
    return FuelAlertParams(window_days=int(merged["window_days"]),
                           **{k: float(merged[k]) for k in ranges if k != "window_days"},
                           mpe_alerts=bool(merged["mpe_alerts"]))


@dataclass
class FuelAlertReport:
    """What one run did: tanks and nozzles fitted, findings, and alerts opened / updated / left as they were
    (or not reopened, their episode having been decided already)."""

    tanks: int = 0
    nozzles: int = 0
    findings: dict[str, int] = field(default_factory=lambda: {LEAK: 0, DRIFT: 0})
    opened: int = 0
    updated: int = 0
    unchanged: int = 0
    suppressed: int = 0


@dataclass(frozen=True)
class _Finding:
    detector: str
    device: int
    severity: str
    evidence: dict[str, Any]


def _local_iso(ts: dt.datetime) -> str:
    return timezone.localtime(ts).isoformat(timespec="minutes")


def _at(start: dt.datetime, hours: float) -> str:
    return _local_iso(start + dt.timedelta(hours=float(hours)))


def _leak_evidence(est: TankEstimate, rec: _Records, place_key: str, tank: str, devices: list[str],
                   p: FuelAlertParams) -> dict[str, Any]:
    z = float(ndtri(1.0 - p.leak_alpha))
    s = est.series
    balance: list[list[Any]] = []
    line: list[list[Any]] = []
    if s is not None and s.reading_h.size:
        span = float(s.reading_h[-1] - s.reading_h[0])
        width = max(1.0, math.ceil(span / BALANCE_POINTS))  # hours per point
        bins = np.floor((s.reading_h - s.reading_h[0]) / width).astype(np.int64)
        count = np.bincount(bins)
        mean_h = np.bincount(bins, weights=s.reading_h) / np.maximum(count, 1)
        mean_b = np.bincount(bins, weights=s.balance_l) / np.maximum(count, 1)
        balance = [[_at(rec.start, h), round(float(b), 1)] for h, b, c in zip(mean_h, mean_b, count, strict=True)
                   if c]
        line = [[_at(rec.start, float(s.reading_h[0])), 0.0],
                [_at(rec.start, float(s.reading_h[-1])), round(float(s.leak_line_l[-1]), 1)]]
    return {
        "place": place_key, "tank": tank, "nozzles": devices,
        "leak_l_per_h": _num(est.leak_l_per_h, 3), "leak_ci95": _num(est.leak_ci95, 3),
        "leak_lower_l_per_h": _num(est.leak_l_per_h - z * est.leak_se, 3),
        "threshold_l_per_h": p.leak_threshold_l_per_h, "alpha": p.leak_alpha,
        "lost_l": _num(est.leak_l_per_h * (float(s.reading_h[-1] - s.reading_h[0]) if s is not None else 0.0), 1),
        "noise_sd_l": _num(est.noise_sd_l, 2), "readings": est.readings, "segments": est.segments,
        "reading_minutes": _num(est.reading_interval_h * 60, 1),
        "window_from": _local_iso(rec.start), "window_to": _local_iso(rec.end),
        "balance": balance, "leak_line": line, "episode": "leak",
    }


def _drift_evidence(est: TankEstimate, j: int, rec: _Records, place_key: str, tank: str, mpe: float,
                    reasons: list[str]) -> dict[str, Any]:
    since = est.drift_from_h[j]
    s = est.series
    periods: list[list[Any]] = []
    if s is not None:
        for h, e, v in zip(s.period_h, s.period_error_pct[:, j], s.period_shown_l[:, j], strict=True):
            periods.append([timezone.localtime(rec.start + dt.timedelta(hours=float(h))).date().isoformat(),
                            _num(float(e), 3), round(float(v), 1)])
    drifted = "drift" in reasons
    return {
        "place": place_key, "tank": tank, "reasons": reasons,
        "error_pct": _num(est.error_pct[j], 4), "ci95_pct": _num(est.ci95_pct[j], 4), "mpe_pct": mpe,
        "exceeds_mpe": bool(est.exceeds(mpe)[j]),
        "drift_pct": _num(est.drift_pct[j], 4) if drifted else None,
        "drift_ci95_pct": _num(est.drift_ci95_pct[j], 4) if drifted else None,
        "drift_since": _at(rec.start, float(since)) if drifted and math.isfinite(since) else None,
        "drift_p": _num(est.drift_p[j], 3) if drifted else None,
        "error_before_pct": _num(est.error_pct[j] - est.drift_pct[j], 4) if drifted else None,
        "sales": int(est.sales[j]), "window_from": _local_iso(rec.start), "window_to": _local_iso(rec.end),
        "periods": periods,
        "episode": f"drift:{_at(rec.start, float(since))}" if drifted and math.isfinite(since) else "mpe",
    }


def _findings(fits: list[TankEstimate], rec: _Records, p: FuelAlertParams, report: FuelAlertReport) -> list[_Finding]:
    places = dict(Place.objects.filter(pk__in={pl for pl, _t in rec.tanks}).values_list("id", "key"))
    tables = load_tables()
    cache: dict[str, float] = {}
    out: list[_Finding] = []
    for est in fits:
        members = [rec.nozzles[int(n)] for n in est.nozzles]
        _pk, _dev, place, tank, _cls = members[0]
        place_key = places.get(place, str(place))
        report.tanks += 1
        report.nozzles += int((est.sales > 0).sum())
        if est.leak_detected(p.leak_threshold_l_per_h, p.leak_alpha):
            first = min(members, key=lambda m: m[1])
            ev = _leak_evidence(est, rec, place_key, tank, sorted(m[1] for m in members), p)
            lower95 = est.leak_l_per_h - est.leak_ci95
            out.append(_Finding(LEAK, first[0], "critical" if lower95 >= p.leak_critical_l_per_h else "warning", ev))
        for j, (pk, _device, _place, _tank, cls) in enumerate(members):
            if est.sales[j] == 0:
                continue
            mpe = _mpe(cls, tables, cache)
            reasons = []
            if est.drift_flagged[j]:
                reasons.append("drift")
            exceeds = bool(est.exceeds(mpe)[j])
            if exceeds and p.mpe_alerts:
                reasons.append("exceeds_mpe")
            if reasons:
                ev = _drift_evidence(est, j, rec, place_key, tank, mpe, reasons)
                out.append(_Finding(DRIFT, pk, "critical" if exceeds else "warning", ev))
    for f in out:
        report.findings[f.detector] += 1
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _upsert(findings: list[_Finding], p: FuelAlertParams, end: dt.datetime, report: FuelAlertReport) -> None:
    """One open alert per instrument and detector (the model's constraint): open, update when the evidence
    changed, or leave alone; a finding whose episode was decided within the window opens nothing."""
    now = timezone.now()
    devices = {f.device for f in findings}
    open_alerts = {(a.device_id, a.detector): a for a in Alert.objects.filter(
        detector__in=FUEL_DETECTORS, status__in=Alert.OPEN, device_id__in=devices)}
    decided: set[tuple[int, str, str]] = set()
    for dev, det, ev in Alert.objects.filter(
            detector__in=FUEL_DETECTORS, status__in=(Alert.Status.CONFIRMED, Alert.Status.DISMISSED),
            device_id__in=devices, updated_at__gte=end - dt.timedelta(days=p.window_days)).values_list(
            "device_id", "detector", "evidence"):
        decided.add((dev, det, str((ev or {}).get("episode", ""))))
    info = {pk: (owner, region) for pk, owner, region in
            Instrument.objects.filter(pk__in=devices).values_list("id", "owner_id", "region_id")}
    rank = {"info": 0, "warning": 1, "critical": 2}
    for f in findings:
        a = open_alerts.get((f.device, f.detector))
        if a is None:
            if (f.device, f.detector, f.evidence["episode"]) in decided:
                report.suppressed += 1
                continue
            owner, region = info[f.device]
            Alert.objects.create(detector=f.detector, device_id=f.device, owner_id=owner, region_id=region,
                                 severity=f.severity, opened_at=now, updated_at=now, evidence=f.evidence)
            report.opened += 1
        elif _same(a.evidence, f.evidence) and rank[f.severity] <= rank[a.severity]:
            report.unchanged += 1
        else:
            if rank[f.severity] > rank[a.severity]:
                a.severity = f.severity
            a.evidence, a.updated_at, a.occurrences = f.evidence, now, a.occurrences + 1
            a.save(update_fields=["severity", "evidence", "updated_at", "occurrences"])
            report.updated += 1


def fuel_alerts_run(*, as_of: dt.datetime | None = None, window_days: int | None = None,
                    params: Mapping[str, Any] | None = None) -> FuelAlertReport:
    """Fit every tank over the ``window_days`` (default: the configuration's) up to the latest gauge reading
    at or before ``as_of`` (default: the latest stored), and open or update the ``fuel.tank_leak`` and
    ``fuel.nozzle_drift`` alerts (see the module docstring).  ``params`` overrides the configuration.  The
    window starts at a local midnight, so the evidence's periods are calendar days."""
    p = fuel_alert_params({**(params or {}), **({"window_days": window_days} if window_days is not None else {})})
    report = FuelAlertReport()
    end = _latest_reading(as_of)
    if end is None:
        return report
    first_day = timezone.localtime(end - dt.timedelta(days=p.window_days)).date()
    start = dt.datetime.combine(first_day, dt.time(0), tzinfo=timezone.get_current_timezone())
    rec = _records(start, end)
    if rec is None:
        return report
    fits = _fit(rec, drift_z=p.drift_z, drift_threshold_pct=p.drift_threshold_pct, series=True)
    findings = _findings(fits, rec, p, report)
    with transaction.atomic():
        _upsert(findings, p, end, report)
    return report


def fuel_detector_title(key: str) -> str | None:
    """The fuel detector's Chinese title (untranslated), or None for another key."""
    return FUEL_DETECTORS.get(key)


