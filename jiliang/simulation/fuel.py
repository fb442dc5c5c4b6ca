"""Fuel station telemetry (加油站在线监测, SPEC 3.2) with the ground truth written beside it.

Pure: no Django.  For every fuel station (加油站) of the city, each tank (油罐) drawn from by at least one
working nozzle (加油枪) is simulated hour by hour:

- **sales** (``dispenser.sale``): each nozzle sells ``sales_per_nozzle_per_day`` (× 0.5–1.5 per nozzle)
  with a day/night pattern (quiet between midnight and 6 o'clock), volumes log-normal around
  ``mean_sale_l`` (diesel: larger).  The nozzle shows ``true × (1 + error)``, rounded to 0.01 L, with its
  amount and a running totalizer.  Every nozzle's true error is N(0, ``nozzle_error_sd_pct``);
  ``drifting_nozzles`` of them (on different tanks) shift by ``drift_pct``…``drift_pct + drift_extra_pct``
  (either sign) from ``drift_from_day`` (default: a random day leaving at least 7 days after it).
- **tank gauge** (液位仪, ``tank.reading``) every ``reading_minutes``: the gross volume at the tank's
  temperature with white noise (``gauge_sd_l``), a slowly varying error (AR(1), ``gauge_slow_sd_l``,
  ``gauge_slow_phi`` per hour, so the same error process whatever the interval) and more noise
  (``settle_sd_l``) in the first reading after a delivery;
  ``temp_c`` to 0.01 °C.  Optionally a scale error of the tank's volume table (``chart_error_sd_pct``).
- **temperature**: the fuel relaxes towards the ground temperature (time constant 36 h) and a delivery
  mixes in fuel that is usually warmer; fuel expands by β ≈ 0.0012/°C (gasoline) or 0.00083/°C (diesel),
  and nozzles dispense at the tank's temperature.
- **deliveries** (卸油, ``tank.delivery``): when the gauge drops below 35 % of the capacity a tanker comes
  1–6 h later with whole thousands of litres up to 92 %; the true volume differs from the delivery note
  by N(0, ``delivery_sd_pct``).
- **leaks** (渗漏): ``leaking_tanks`` tanks lose ``leak_l_per_h`` from ``leak_from_day``.

:class:`FuelTruth` says which nozzle has which error and drift from when, and which tank leaks.
:func:`simulate_fuel` gives the records as arrays (for benchmarks), :func:`generate_fuel` as NDJSON lines.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from jiliang.simulation.city import City

TZ = dt.timezone(dt.timedelta(hours=8))
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Relative sales intensity by hour of day (a city station: morning and evening peaks, quiet nights).
HOURLY = np.array([0.15, 0.08, 0.06, 0.05, 0.06, 0.2, 0.6, 1.3, 1.7, 1.4, 1.2, 1.2,
                   1.3, 1.2, 1.1, 1.2, 1.4, 1.7, 1.8, 1.5, 1.2, 0.9, 0.6, 0.3])
PRODUCTS = {  # product: (share of tanks, thermal expansion 1/°C, price fen/L, mean sale L)
    "92#": (0.45, 0.00120, 760, 35.0),
    "95#": (0.30, 0.00118, 810, 35.0),
    "0#": (0.25, 0.00083, 730, 60.0),
}
RELAX_H = 36.0
REORDER = 0.35
FILL_TO = 0.92


@dataclass
class FuelSpec:
    days: int = 30
    sales_per_nozzle_per_day: float = 45.0
    mean_sale_l: float = 35.0
    reading_minutes: int = 60
    gauge_sd_l: float = 2.0
    gauge_slow_sd_l: float = 1.0
    gauge_slow_phi: float = 0.8
    settle_sd_l: float = 8.0
    temp_sd_c: float = 0.02
    nozzle_error_sd_pct: float = 0.05
    drifting_nozzles: int = 1
    drift_pct: float = 0.3
    drift_extra_pct: float = 0.2
    drift_from_day: int | None = None
    leaking_tanks: int = 1
    leak_l_per_h: float = 0.38
    leak_from_day: int = 0
    delivery_sd_pct: float = 0.3
    chart_error_sd_pct: float = 0.0


@dataclass
class FuelTruth:
    nozzle_error_pct: dict[str, float] = field(default_factory=dict)          # device -> error before any drift
    drifting_nozzles: dict[str, dict[str, float]] = field(default_factory=dict)  # device -> drift_pct, from_day
    leaking_tanks: dict[str, dict[str, float]] = field(default_factory=dict)  # "place/tank" -> l_per_h, from_day
    tanks: dict[str, dict[str, object]] = field(default_factory=dict)        # "place/tank" -> product, capacity…

    def error_pct_at(self, device: str, day: float) -> float:
        """A nozzle's true error on a (fractional) day since the start."""
        drift = self.drifting_nozzles.get(device)
        extra = drift["drift_pct"] if drift and day >= drift["from_day"] else 0.0
        return self.nozzle_error_pct[device] + extra

    def as_dict(self) -> dict[str, object]:
        return {"nozzle_error_pct": self.nozzle_error_pct, "drifting_nozzles": self.drifting_nozzles,
                "leaking_tanks": self.leaking_tanks, "tanks": self.tanks}


@dataclass
class FuelData:
    """The simulated records as arrays; times in seconds since ``start``; volumes in ml."""

    start: dt.datetime
    devices: list[str]                     # nozzle device ids (global nozzle index)
    places: list[str]                      # per tank
    tank_names: list[str]                  # per tank ("T1"…)
    nozzle_tank: IntArray
    sale_nozzle: IntArray
    sale_s: FloatArray
    sale_seq: IntArray
    sale_ml: IntArray
    sale_fen: IntArray
    sale_totalizer_ml: IntArray
    reading_tank: IntArray
    reading_s: FloatArray
    reading_ml: IntArray
    reading_temp_c: FloatArray
    delivery_tank: IntArray
    delivery_s: FloatArray
    delivery_ml: IntArray

    def tank_key(self, i: int) -> str:
        return f"{self.places[i]}/{self.tank_names[i]}"


def _tanks(city: City) -> tuple[list[str], list[tuple[str, str]], list[int]]:
    """Working nozzles (in registry order), tanks with at least one of them, and each nozzle's tank."""
    keys: dict[tuple[str, str], int] = {}
    devices, nozzle_tank = [], []
    for inst in city.instruments:
        if inst["instrument_type"] != "fuel_dispenser" or inst["status"] not in ("in_service", "installed"):
            continue
        if not inst.get("tank") or not inst.get("place_key"):
            continue
        key = (inst["place_key"], inst["tank"])
        devices.append(inst["device_id"])
        nozzle_tank.append(keys.setdefault(key, len(keys)))
    return devices, list(keys), nozzle_tank


def simulate_fuel(city: City, *, seed: int, spec: FuelSpec | None = None,
                  start: dt.date | None = None) -> tuple[FuelData, FuelTruth]:
    """All fuel records of the city as arrays, and the ground truth."""
    spec = spec or FuelSpec()
    if spec.days < 1 or not 5 <= spec.reading_minutes <= 1440:
        raise ValueError("days must be at least 1 and reading_minutes between 5 and 1440")
    start = start or city.as_of - dt.timedelta(days=spec.days)
    start_dt = dt.datetime.combine(start, dt.time(0), tzinfo=TZ)
    rng = np.random.default_rng([seed, 4471])
    devices, tanks, nozzle_tank_list = _tanks(city)
    nozzle_tank = np.array(nozzle_tank_list, dtype=np.int64)
    truth = FuelTruth()
    n_noz, n_tank = len(devices), len(tanks)
    e0 = rng.normal(0.0, spec.nozzle_error_sd_pct, n_noz)
    drift = np.zeros(n_noz)
    drift_from = np.full(n_noz, np.inf)
    # drifting nozzles on different tanks (two opposite drifts on one tank would cancel in its balance)
    order = rng.permutation(n_noz)
    _first, one_per_tank = np.unique(nozzle_tank[order], return_index=True)
    for i in order[np.sort(one_per_tank)][:spec.drifting_nozzles]:
        size = rng.uniform(spec.drift_pct, spec.drift_pct + spec.drift_extra_pct) * rng.choice([-1, 1])
        day = spec.drift_from_day
        if day is None:
            low = max(1, spec.days // 3)
            day = int(rng.integers(low, max(low + 1, spec.days - 7 + 1)))
        drift[i], drift_from[i] = size, day
        truth.drifting_nozzles[devices[i]] = {"drift_pct": round(float(size), 4), "from_day": int(day)}
    for i, dev in enumerate(devices):
        truth.nozzle_error_pct[dev] = round(float(e0[i]), 4)
    leak = np.zeros(n_tank)
    for i in rng.choice(n_tank, min(spec.leaking_tanks, n_tank), replace=False) if n_tank else []:
        leak[i] = spec.leak_l_per_h
        truth.leaking_tanks[f"{tanks[i][0]}/{tanks[i][1]}"] = {"l_per_h": spec.leak_l_per_h,
                                                               "from_day": spec.leak_from_day}
    ground = {p: rng.uniform(21.0, 27.0) for p in sorted({p for p, _ in tanks})}
    step_s = spec.reading_minutes * 60.0
    n_steps = int(spec.days * 86400 // step_s)
    hour_p = HOURLY / HOURLY.sum()
    rate = spec.sales_per_nozzle_per_day * rng.uniform(0.5, 1.5, n_noz)
    members = [np.flatnonzero(nozzle_tank == i) for i in range(n_tank)]
    sales: dict[str, list[npt.NDArray[np.generic]]] = {k: [] for k in ("nozzle", "s", "seq", "ml", "fen", "tot")}
    reads: dict[str, list[npt.NDArray[np.generic]]] = {k: [] for k in ("tank", "s", "ml", "temp")}
    deliveries: list[tuple[int, float, int]] = []
    for ti, (place, tank) in enumerate(tanks):
        products = list(PRODUCTS)
        product = products[int(rng.choice(len(products), p=[PRODUCTS[k][0] for k in products]))]
        _share, beta, price, mean_l = PRODUCTS[product]
        mean_l *= spec.mean_sale_l / 35.0
        capacity = float(rng.choice([30000.0, 30000.0, 50000.0]))
        chart = rng.normal(0.0, spec.chart_error_sd_pct / 100)
        truth.tanks[f"{place}/{tank}"] = {"product": product, "capacity_l": capacity, "beta_per_c": beta,
                                          "nozzles": [devices[n] for n in members[ti]]}
        # sales of every nozzle of the tank (true gross litres at the tank's temperature), by step
        step_gross = np.zeros(n_steps)
        for n in members[ti]:
            count = int(rng.poisson(rate[n] * spec.days))
            secs = (rng.integers(0, spec.days, count) * 86400.0 + rng.choice(24, count, p=hour_p) * 3600.0
                    + rng.integers(0, 3600, count))
            # whole seconds, never at a reading's: a sale is between two readings, as its record says
            secs = np.sort(np.where(secs % step_s == 0, secs + 1, secs))
            true_l = np.clip(rng.lognormal(math.log(mean_l) - 0.1, 0.45, count), 2.0, 200.0)
            err = e0[n] + np.where(secs >= drift_from[n] * 86400.0, drift[n], 0.0)
            shown_ml = np.round(true_l * (1 + err / 100) * 100).astype(np.int64) * 10
            fen = np.round(shown_ml * price / 1000).astype(np.int64)
            totalizer = int(rng.integers(10**7, 10**9)) + np.cumsum(shown_ml)
            for key, arr in (("nozzle", np.full(count, n, dtype=np.int64)), ("s", secs),
                             ("seq", np.arange(1, count + 1, dtype=np.int64)), ("ml", shown_ml), ("fen", fen),
                             ("tot", totalizer)):
                sales[key].append(arr)
            step_gross += np.bincount((secs // step_s).astype(np.int64), weights=true_l, minlength=n_steps)
        # the tank, step by step: standard (20 °C) volume, temperature, gauge
        g0 = ground[place]
        temp = g0 + rng.normal(0.0, 0.5)
        inv = capacity * rng.uniform(0.45, 0.9) / (1 + beta * (temp - 20.0))
        slow = rng.normal(0.0, spec.gauge_slow_sd_l)
        phi = spec.gauge_slow_phi ** (step_s / 3600.0)  # the slow error's correlation per reading
        slow_sd = spec.gauge_slow_sd_l * math.sqrt(1 - phi**2)
        pending: float | None = None
        r_ml = np.empty(n_steps + 1, dtype=np.int64)
        r_temp = np.empty(n_steps + 1)
        leak_from = spec.leak_from_day * 86400.0
        settle = False
        for j in range(n_steps + 1):
            if j:
                t0 = (j - 1) * step_s
                settle = False
                if pending is not None and pending < t0 + step_s:
                    gross_now = inv * (1 + beta * (temp - 20.0))
                    note = max(1000.0, math.floor((FILL_TO * capacity - gross_now) / 1000.0) * 1000.0)
                    t_del = g0 + rng.normal(1.0, 2.5)
                    true_d = note * (1 + rng.normal(0.0, spec.delivery_sd_pct / 100)) / (1 + beta * (t_del - 20.0))
                    temp = (inv * temp + true_d * t_del) / (inv + true_d)
                    inv += true_d
                    deliveries.append((ti, pending, int(note * 1000)))
                    pending, settle = None, True
                inv -= step_gross[j - 1] / (1 + beta * (temp - 20.0))
                if leak[ti] and t0 >= leak_from:
                    inv -= leak[ti] * step_s / 3600.0
                t1 = t0 + step_s
                ground_t = g0 + 0.05 * math.sin(2 * math.pi * t1 / 86400.0)
                temp = ground_t + (temp - ground_t) * math.exp(-step_s / 3600.0 / RELAX_H)
                slow = phi * slow + rng.normal(0.0, slow_sd)
            gross = inv * (1 + beta * (temp - 20.0)) * (1 + chart)
            noise = rng.normal(0.0, spec.gauge_sd_l) + slow + (rng.normal(0.0, spec.settle_sd_l) if settle else 0.0)
            r_ml[j] = round((gross + noise) * 1000)
            r_temp[j] = round(temp + rng.normal(0.0, spec.temp_sd_c), 2)
            if pending is None and gross < REORDER * capacity and j < n_steps:
                # the tanker comes 1–6 h later, never at the time of a reading (whole seconds)
                pending = (j + int(rng.integers(1, 6))) * step_s + float(rng.integers(60, int(step_s) - 60))
        for key, arr in (("tank", np.full(n_steps + 1, ti, dtype=np.int64)), ("s", np.arange(n_steps + 1) * step_s),
                         ("ml", r_ml), ("temp", r_temp)):
            reads[key].append(arr)

    def ints(parts: list[npt.NDArray[np.generic]]) -> IntArray:
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def floats(parts: list[npt.NDArray[np.generic]]) -> FloatArray:
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0, dtype=np.float64)

    data = FuelData(
        start=start_dt, devices=devices, places=[p for p, _ in tanks], tank_names=[t for _, t in tanks],
        nozzle_tank=nozzle_tank, sale_nozzle=ints(sales["nozzle"]), sale_s=floats(sales["s"]),
        sale_seq=ints(sales["seq"]), sale_ml=ints(sales["ml"]), sale_fen=ints(sales["fen"]),
        sale_totalizer_ml=ints(sales["tot"]), reading_tank=ints(reads["tank"]), reading_s=floats(reads["s"]),
        reading_ml=ints(reads["ml"]), reading_temp_c=floats(reads["temp"]),
        delivery_tank=np.array([d[0] for d in deliveries], dtype=np.int64),
        delivery_s=np.array([d[1] for d in deliveries], dtype=np.float64),
        delivery_ml=np.array([d[2] for d in deliveries], dtype=np.int64))
    return data, truth


def _stamps(start: dt.datetime, seconds: FloatArray) -> list[str]:
    """RFC 3339 times in the start's offset (+08:00), vectorised."""
    local = np.datetime64(start.replace(tzinfo=None), "s") + seconds.astype(np.int64).astype("timedelta64[s]")
    offset = start.isoformat()[-6:]
    return [f"{x}{offset}" for x in np.datetime_as_string(local, unit="s")]


def fuel_lines(data: FuelData) -> list[str]:
    """The records as SPEC 3.2 NDJSON lines: per tank its readings and deliveries, then each nozzle's sales."""
    lines: list[str] = []
    r_ts, d_ts = _stamps(data.start, data.reading_s), _stamps(data.start, data.delivery_s)
    for i in range(len(data.places)):
        place, tank = data.places[i], data.tank_names[i]
        for j in np.flatnonzero(data.reading_tank == i).tolist():
            lines.append(f'{{"kind":"tank.reading","place":"{place}","tank":"{tank}","ts":"{r_ts[j]}",'
                         f'"volume_ml":{data.reading_ml[j]},"temp_c":{data.reading_temp_c[j]:.2f}}}')
        for j in np.flatnonzero(data.delivery_tank == i).tolist():
            lines.append(f'{{"kind":"tank.delivery","place":"{place}","tank":"{tank}","ts":"{d_ts[j]}",'
                         f'"volume_ml":{data.delivery_ml[j]}}}')
    devices = data.devices
    for n, ts, seq, ml, fen, tot in zip(data.sale_nozzle.tolist(), _stamps(data.start, data.sale_s),
                                        data.sale_seq.tolist(), data.sale_ml.tolist(), data.sale_fen.tolist(),
                                        data.sale_totalizer_ml.tolist(), strict=True):
        lines.append(f'{{"kind":"dispenser.sale","device":"{devices[n]}","ts":"{ts}","seq":{seq},'
                     f'"volume_ml":{ml},"amount_fen":{fen},"totalizer_ml":{tot}}}')
    return lines


def generate_fuel(city: City, *, seed: int, days: int | None = None, start: dt.date | None = None,
                  spec: FuelSpec | None = None) -> tuple[list[str], FuelTruth]:
    """All fuel records as NDJSON lines and the ground truth.  ``days`` overrides ``spec.days``; ``start``
    defaults to ``days`` before the city's ``as_of``, so the last gauge reading is at 00:00 on ``as_of``."""
    spec = spec or FuelSpec()
    if days is not None:
        spec = dataclasses.replace(spec, days=days)
    data, truth = simulate_fuel(city, seed=seed, spec=spec, start=start)
    return fuel_lines(data), truth


def dumps_truth(truth: FuelTruth) -> str:
    return json.dumps(truth.as_dict(), ensure_ascii=False, indent=1, sort_keys=True)
