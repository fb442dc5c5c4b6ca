"""MPE rule engine (最大允许误差判定): judges verification test points per instrument type and class.

Pure Python/NumPy, driven by ``jiliang/engine/data/mpe.yaml`` (copied from the reference file with
sources).  Every point becomes a lower and an upper limit; a point passes when
``lower <= error <= upper`` — a point exactly on the MPE passes — and its margin is the distance to the
nearer limit (``mpe - |error|`` for symmetric limits), negative when failing.  Limits are rounded to 9
decimals so that products such as 1.5 × 0.2 g compare equal to the decimal a person writes.

>>> r = evaluate({"instrument_type": "water_meter", "accuracy_class": "2",
...               "params": {"Q3_m3h": 2.5, "R": 100},
...               "points": [{"point": "Q1", "error_pct": 5.0}, {"point": "Q3", "error_pct": -2.1}]})
>>> r["conforming"], [(p["mpe"], p["verdict"]) for p in r["points"]]
(False, [(5.0, 'pass'), (2.0, 'fail')])
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

STAGES = ("initial", "in_service")
TYPES = ("water_meter", "gas_meter", "scale", "fuel_dispenser", "ev_charger_ac", "ev_charger_dc",
         "electricity_meter", "taxi_meter")
FloatArray = npt.NDArray[np.float64]


class RuleError(ValueError):
    """Bad evaluation input.  ``field`` names what is wrong (e.g. ``points[2].load_g``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


@cache
def _shipped_tables() -> dict[str, Any]:
    text = resources.files("jiliang.engine").joinpath("data/mpe.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def load_tables(overrides_file: str | None = None) -> dict[str, Any]:
    """The shipped tables, deep-merged with a deployment's overrides (``JILIANG_RULES_FILE``)."""
    tables = copy.deepcopy(_shipped_tables())
    path = overrides_file if overrides_file is not None else os.environ.get("JILIANG_RULES_FILE")
    if path:
        over = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(over, dict):
            raise RuleError(f"{path}: the rules override file must be a mapping")
        _deep_merge(tables, over)
    return tables


@dataclass(frozen=True)
class Limits:
    """Per-point limits for a batch of points of one instrument."""

    labels: list[str]
    errors: FloatArray
    lower: FloatArray
    upper: FloatArray


def judge(errors: FloatArray, lower: FloatArray, upper: FloatArray) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Vectorised verdicts and margins for any number of points (bulk uploads use this directly)."""
    lo = np.round(lower, 9)
    hi = np.round(upper, 9)
    ok = (errors >= lo) & (errors <= hi)
    margin: FloatArray = np.round(np.minimum(hi - errors, errors - lo), 9).astype(np.float64)
    return ok, margin


# ----------------------------------------------------------------------------------------------- type rules

def _num(obj: Mapping[str, Any], key: str, where: str, *, positive: bool = False) -> float:
    if key not in obj or obj[key] is None:
        raise RuleError(f"{where}: missing field {key!r}", f"{where}.{key}")
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise RuleError(f"{where}.{key} must be a number, not {v!r}", f"{where}.{key}")
    f = float(v)
    if not np.isfinite(f):
        raise RuleError(f"{where}.{key} must be finite", f"{where}.{key}")
    if positive and f <= 0:
        raise RuleError(f"{where}.{key} must be positive", f"{where}.{key}")
    return f


def _class_table(t: Mapping[str, Any], itype: str, accuracy_class: str | None, key: str = "classes") -> Any:
    classes = t[key]
    if accuracy_class is None or str(accuracy_class) not in classes:
        allowed = ", ".join(map(str, classes))
        raise RuleError(f"unknown accuracy_class {accuracy_class!r} for {itype} (allowed: {allowed})",
                        "accuracy_class")
    return classes[str(accuracy_class)]


def _factor(t: Mapping[str, Any], stage: str) -> float:
    return float(t["in_service_factor"]["value"]) if stage == "in_service" else 1.0


def _water(t: Mapping[str, Any], cls: str, stage: str, params: Mapping[str, Any],
           points: Sequence[Mapping[str, Any]]) -> Limits:
    limits = _class_table(t, "water_meter", cls)
    _num(params, "Q3_m3h", "params", positive=True)
    _num(params, "R", "params", positive=True)
    f = _factor(t, stage)
    labels, errs, mpes = [], [], []
    for i, p in enumerate(points):
        where = f"points[{i}]"
        label = p.get("point")
        zone = t["points"].get(label) if isinstance(label, str) else None
        if zone is None:
            raise RuleError(f"{where}: unknown point {label!r} for water_meter (use Q1, Q2, Q3, Q4)", f"{where}.point")
        temp = _num(p, "water_temp_c", where) if p.get("water_temp_c") is not None else 20.0
        key = "upper_zone_hot" if zone == "upper_zone" and temp > t["hot_water_above_c"] else zone
        labels.append(str(label))
        errs.append(_num(p, "error_pct", where))
        mpes.append(limits[key] * f)
    m = np.array(mpes)
    return Limits(labels, np.array(errs), -m, m)


def _gas(t: Mapping[str, Any], cls: str, stage: str, params: Mapping[str, Any],
         points: Sequence[Mapping[str, Any]]) -> Limits:
    limits = _class_table(t, "gas_meter", cls)
    qmax = _num(params, "qmax_m3h", "params", positive=True)
    qt = round(float(t["qt_over_qmax"]["value"]) * qmax, 9)  # 0.1 × 6 must equal 0.6
    f = _factor(t, stage)
    labels, errs, mpes = [], [], []
    for i, p in enumerate(points):
        where = f"points[{i}]"
        q = _num(p, "flow_m3h", where, positive=True)
        if q > qmax * (1 + 1e-9):
            raise RuleError(f"{where}.flow_m3h {q} exceeds qmax {qmax}", f"{where}.flow_m3h")
        labels.append(str(p.get("point") or f"{q:g} m³/h"))
        errs.append(_num(p, "error_pct", where))
        mpes.append((limits["lower_zone"] if q < qt else limits["upper_zone"]) * f)
    m = np.array(mpes)
    return Limits(labels, np.array(errs), -m, m)


def scale_mpe_e(bands: Sequence[Sequence[float]], load_e: FloatArray) -> FloatArray:
    """MPE in e for loads given in e (vectorised): first band with from < m <= to (zero in the first)."""
    out = np.full(load_e.shape, np.nan)
    for _lo, hi, mpe in reversed(bands):
        out = np.where(load_e <= np.round(hi, 9), mpe, out)
    out = np.where(load_e > np.round(bands[-1][1], 9), np.nan, out)
    return out


def _scale(t: Mapping[str, Any], cls: str, stage: str, params: Mapping[str, Any],
           points: Sequence[Mapping[str, Any]]) -> Limits:
    bands = _class_table(t, "scale", cls)
    e = _num(params, "e_g", "params", positive=True)
    max_g = _num(params, "max_g", "params", positive=True)
    f = _factor(t, stage)
    labels, errs, loads = [], [], []
    for i, p in enumerate(points):
        where = f"points[{i}]"
        load = _num(p, "load_g", where)
        if load < 0:
            raise RuleError(f"{where}.load_g must not be negative", f"{where}.load_g")
        if load > max_g * (1 + 1e-9):
            raise RuleError(f"{where}.load_g {load:g} exceeds Max {max_g:g} g", f"{where}.load_g")
        labels.append(str(p.get("point") or f"{load:g} g"))
        errs.append(_num(p, "error_g", where))
        loads.append(load)
    load_e = np.round(np.array(loads) / e, 9)
    mpe_e = scale_mpe_e(bands, load_e)
    if np.isnan(mpe_e).any():
        i = int(np.flatnonzero(np.isnan(mpe_e))[0])
        raise RuleError(f"points[{i}].load_g is beyond the class {cls} table ({bands[-1][1]} e)", f"points[{i}].load_g")
    m = mpe_e * e * f
    return Limits(labels, np.array(errs), -m, m)


def _flat(itype: str) -> Any:
    def rule(t: Mapping[str, Any], cls: str, stage: str, params: Mapping[str, Any],
             points: Sequence[Mapping[str, Any]]) -> Limits:
        base = float(_class_table(t, itype, cls))
        if stage == "in_service" and "in_service_mpe" in t:
            mpe = float(_class_table(t["in_service_mpe"], itype, cls, key="value"))
        else:
            mpe = base * _factor(t, stage)
        labels, errs = [], []
        for i, p in enumerate(points):
            where = f"points[{i}]"
            labels.append(str(p.get("point") if p.get("point") is not None else i + 1))
            errs.append(_num(p, "error_pct", where))
        m = np.full(len(errs), mpe)
        return Limits(labels, np.array(errs), -m, m)

    return rule


def _electricity(t: Mapping[str, Any], cls: str, stage: str, params: Mapping[str, Any],
                 points: Sequence[Mapping[str, Any]]) -> Limits:
    if str(cls) not in ("1", "2"):
        raise RuleError(f"unknown accuracy_class {cls!r} for electricity_meter (allowed: 1, 2)", "accuracy_class")
    f = _factor(t, stage)
    labels, errs, mpes = [], [], []
    for i, p in enumerate(points):
        where = f"points[{i}]"
        ratio = _num(p, "current_ratio", where, positive=True)
        pf = str(p.get("power_factor", ""))
        group = t["power_factors"].get(pf)
        if group is None:
            raise RuleError(f"{where}: unknown power_factor {pf!r} (use 1.0, 0.5L, 0.8C)", f"{where}.power_factor")
        mpe = None
        for lo, hi, by_class in t["bands"][group]:
            if ratio >= lo - 1e-12 and (hi is None or ratio < hi - 1e-12):
                mpe = float(by_class[str(cls)])
                break
        if mpe is None:
            lowest = t["bands"][group][0][0]
            raise RuleError(f"{where}.current_ratio {ratio:g} is below {lowest} Ib, the lowest test current "
                            f"for power factor {pf}", f"{where}.current_ratio")
        labels.append(str(p.get("point") or f"{ratio:g}Ib cosφ={pf}"))
        errs.append(_num(p, "error_pct", where))
        mpes.append(mpe * f)
    m = np.array(mpes)
    return Limits(labels, np.array(errs), -m, m)


def _taxi(t: Mapping[str, Any], cls: str | None, stage: str, params: Mapping[str, Any],
          points: Sequence[Mapping[str, Any]]) -> Limits:
    f = _factor(t, stage)
    labels, errs = [], []
    for i, p in enumerate(points):
        labels.append(str(p.get("point") if p.get("point") is not None else i + 1))
        errs.append(_num(p, "error_pct", f"points[{i}]"))
    n = len(errs)
    return Limits(labels, np.array(errs), np.full(n, t["limits"]["lower"] * f), np.full(n, t["limits"]["upper"] * f))


RULES = {
    "water_meter": _water,
    "gas_meter": _gas,
    "scale": _scale,
    "fuel_dispenser": _flat("fuel_dispenser"),
    "ev_charger_ac": _flat("ev_charger_ac"),
    "ev_charger_dc": _flat("ev_charger_dc"),
    "electricity_meter": _electricity,
    "taxi_meter": _taxi,
}


def limits_for(request: Mapping[str, Any], tables: Mapping[str, Any] | None = None) -> Limits:
    if not isinstance(request, Mapping):
        raise RuleError("the input must be a JSON object")
    itype = request.get("instrument_type")
    if itype not in RULES:
        raise RuleError(f"unknown instrument_type {itype!r} (allowed: {', '.join(TYPES)})", "instrument_type")
    stage = request.get("stage") or "initial"
    if stage not in STAGES:
        raise RuleError(f"unknown stage {stage!r} (use initial or in_service)", "stage")
    points = request.get("points")
    if not isinstance(points, list) or not points:
        raise RuleError("points must be a non-empty list", "points")
    for i, p in enumerate(points):
        if not isinstance(p, Mapping):
            raise RuleError(f"points[{i}] must be an object", f"points[{i}]")
    params = request.get("params") or {}
    if not isinstance(params, Mapping):
        raise RuleError("params must be an object", "params")
    cls = request.get("accuracy_class")
    if itype != "taxi_meter" and cls is None:
        raise RuleError(f"missing field 'accuracy_class' for {itype}", "accuracy_class")
    t = (tables or load_tables())[itype]
    result: Limits = RULES[itype](t, None if cls is None else str(cls), stage, params, points)
    return result


def evaluate(request: Mapping[str, Any], tables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """SPEC 3.3: ``{"conforming", "points": [{"point", "mpe", "verdict", "margin"}]}``.

    ``mpe`` is the limit on the side of the error (the magnitude for symmetric limits); asymmetric limits
    also give ``mpe_lower`` and ``mpe_upper``.
    """
    lim = limits_for(request, tables)
    ok, margin = judge(lim.errors, lim.lower, lim.upper)
    symmetric = bool(np.allclose(-lim.lower, lim.upper))
    out = []
    for i, label in enumerate(lim.labels):
        err = float(lim.errors[i])
        lo, hi = float(np.round(lim.lower[i], 9)), float(np.round(lim.upper[i], 9))
        row: dict[str, Any] = {"point": label, "mpe": hi if err >= 0 else -lo,
                               "verdict": "pass" if ok[i] else "fail", "margin": float(margin[i])}
        if not symmetric:
            row["mpe_lower"], row["mpe_upper"] = lo, hi
        out.append(row)
    return {"conforming": bool(ok.all()), "points": out}


INDEX_LABELLED = frozenset({"fuel_dispenser", "ev_charger_ac", "ev_charger_dc", "taxi_meter"})


def evaluate_many(requests: list[Mapping[str, Any]], tables: Mapping[str, Any] | None = None
                  ) -> list[dict[str, Any] | RuleError]:
    """Evaluate many requests at once: requests sharing type, class, stage and parameters are judged in one
    vectorised call.  Each result is what :func:`evaluate` returns, or the :class:`RuleError` for that
    request (a failing group is re-run request by request so the error is attributed correctly).

    >>> reqs = [{"instrument_type": "fuel_dispenser", "accuracy_class": "0.3", "points": [{"error_pct": e}]}
    ...         for e in (0.1, 0.4)] + [{"instrument_type": "nope", "points": [{"error_pct": 0}]}]
    >>> [r["conforming"] if isinstance(r, dict) else type(r).__name__ for r in evaluate_many(reqs)]
    [True, False, 'RuleError']
    """
    import json as _json

    tables = tables or load_tables()
    out: list[dict[str, Any] | RuleError | None] = [None] * len(requests)
    groups: dict[str, list[int]] = {}
    for i, req in enumerate(requests):
        try:
            key = _json.dumps([req.get("instrument_type"), req.get("accuracy_class"), req.get("stage") or "initial",
                               req.get("params") or {}], sort_keys=True, default=str)
        except (AttributeError, TypeError) as exc:
            out[i] = RuleError(f"the input must be a JSON object ({exc})")
            continue
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        first = requests[members[0]]
        points: list[Any] = []
        counts: list[int] = []
        for i in members:
            p = requests[i].get("points")
            ok = isinstance(p, list) and bool(p) and all(isinstance(x, Mapping) for x in p)
            counts.append(len(p) if ok and isinstance(p, list) else -1)
            if ok and isinstance(p, list):
                points.extend(p)
        if -1 in counts:
            limits = None
        else:
            try:
                limits = limits_for({**first, "points": points}, tables)
            except RuleError:
                limits = None
        if limits is None:  # attribute the error to the right request(s)
            for i in members:
                try:
                    out[i] = evaluate(requests[i], tables)
                except RuleError as exc:
                    out[i] = exc
            continue
        ok_all, margin_all = judge(limits.errors, limits.lower, limits.upper)
        lo_all = np.round(limits.lower, 9)
        hi_all = np.round(limits.upper, 9)
        start = 0
        for i, n in zip(members, counts, strict=True):
            sl = slice(start, start + n)
            start += n
            errs, lo, hi = limits.errors[sl], lo_all[sl], hi_all[sl]
            symmetric = bool(np.allclose(-lo, hi))
            rows = []
            own_points = requests[i]["points"]
            for j, label in enumerate(limits.labels[sl]):
                if first.get("instrument_type") in INDEX_LABELLED and own_points[j].get("point") is None:
                    label = str(j + 1)  # unlabelled points are numbered within their own request
                row: dict[str, Any] = {"point": label, "mpe": float(hi[j]) if errs[j] >= 0 else float(-lo[j]),
                                       "verdict": "pass" if ok_all[sl][j] else "fail",
                                       "margin": float(margin_all[sl][j])}
                if not symmetric:
                    row["mpe_lower"], row["mpe_upper"] = float(lo[j]), float(hi[j])
                rows.append(row)
            out[i] = {"conforming": bool(ok_all[sl].all()), "points": rows}
    return [r if r is not None else RuleError("not evaluated") for r in out]
