"""Telemetry of the simulated city (SPEC 3.2 NDJSON) with the ground truth written beside it.

Pure: no Django.  What is simulated, and the faults injected (figures from the issue's 2017 market survey
and published charger studies; all rates are parameters):

- **scales**: transactions through the day; ``cheat_share`` of scales inflate the weight they show by 3–30 %
  (some only part of the day), ``drift_share`` are merely out of tolerance (0.2–1 %); the market's fair
  scale (公平秤) re-weighs a few purchases per stall per day (``scale.recheck``: claimed = what the stall's
  scale showed, actual = the true weight); a few scales charge more than price × weight (amount padding).
  ``zero_drift_share`` of the otherwise sound stall scales have a zero offset (零点漂移) of 15–60 g from a
  given day, in transactions and re-weighs alike: shown = round((true + offset) / 5) · 5.  Three in four
  offsets are positive (the scale shows more than the goods weigh: the buyer is short-changed), one in four
  negative: a zero shifts either way physically (temperature, creep, debris under the platter, a bad
  zeroing), but a vendor soon re-zeros a scale that short-changes him and leaves one that favours him.
- **chargers**: sessions by a vehicle population with their own BMS bias (≈1.5 %) and per-session noise of
  2–3 %; each charger's true error ≈ N(0, 0.4 %), ``charger_out_share`` out of their class (±2.5–4 %); a few
  chargers whose register jumps backwards once.
- **household meters**: one reading a day per meter with each household's consumption; ``stuck_share``
  stop moving from a given day, ``reversed_share`` run backwards from a given day.  ``hourly_meter_share``
  of the water meters are smart meters read every hour (at 01:00, 02:00, … 24:00) with a household's daily
  profile (``HOURLY_PROFILE``: no use in most night hours, peaks in the morning and the evening; the day's
  total as for a daily meter); ``leak_share`` of those (sound ones only) get a continuous leak of 2–20 L/h
  from 00:00 of a given day.

The new faults (zero drift, hourly meters, leaks) are drawn from random streams of their own, so a seed's
other devices, their faults and their records are the same as before those were added.

The ground truth (:class:`GroundTruth`) says which instrument has which fault from when.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from jiliang.simulation.city import City

TZ = dt.timezone(dt.timedelta(hours=8))


@dataclass
class TelemetrySpec:
    days: int = 7
    scale_txns_per_day: int = 40
    rechecks_per_stall_per_day: float = 1.0
    charger_sessions_per_day: float = 8.0
    meter_readings_per_day: int = 1
    cheat_share: float = 0.005
    drift_share: float = 0.025
    padding_share: float = 0.002
    charger_out_share: float = 0.01
    charger_backwards_share: float = 0.003
    vehicles_per_charger: float = 3.0
    stuck_share: float = 0.003
    reversed_share: float = 0.002
    zero_drift_share: float = 0.005
    hourly_meter_share: float = 0.1
    leak_share: float = 0.02


@dataclass
class GroundTruth:
    cheating_scales: dict[str, dict[str, float]] = field(default_factory=dict)   # device -> inflation, from_day
    drifting_scales: dict[str, float] = field(default_factory=dict)              # device -> error fraction
    padding_scales: set[str] = field(default_factory=set)
    charger_error_pct: dict[str, float] = field(default_factory=dict)            # every charger's true error
    backwards_chargers: set[str] = field(default_factory=set)
    stuck_meters: dict[str, int] = field(default_factory=dict)                   # device -> from day
    reversed_meters: dict[str, int] = field(default_factory=dict)
    zero_drift_scales: dict[str, dict[str, float]] = field(default_factory=dict)  # device -> offset_g, from_day
    hourly_meters: set[str] = field(default_factory=set)                        # water meters read hourly
    leaking_meters: dict[str, int] = field(default_factory=dict)                # device -> from day (00:00)
    leak_l_per_h: dict[str, float] = field(default_factory=dict)                # device -> leak rate

    def as_dict(self) -> dict[str, object]:
        return {"cheating_scales": self.cheating_scales, "drifting_scales": self.drifting_scales,
                "padding_scales": sorted(self.padding_scales), "charger_error_pct": self.charger_error_pct,
                "backwards_chargers": sorted(self.backwards_chargers), "stuck_meters": self.stuck_meters,
                "reversed_meters": self.reversed_meters, "zero_drift_scales": self.zero_drift_scales,
                "hourly_meters": sorted(self.hourly_meters), "leaking_meters": self.leaking_meters,
                "leak_l_per_h": self.leak_l_per_h}


# A household's day, hour by hour (use between h:00 and h+1:00): the chance of any use in that hour and
# its expected share of the day's use (normalised below).  Night hours are mostly dry; the peaks are the
# morning (washing, breakfast) and the evening (cooking, showers) — the usual shape of residential demand.
HOURLY_PROFILE: tuple[tuple[float, float], ...] = (
    (0.06, 0.005), (0.04, 0.003), (0.03, 0.002), (0.03, 0.002), (0.05, 0.003), (0.15, 0.01),
    (0.55, 0.05), (0.80, 0.10), (0.70, 0.08), (0.50, 0.05), (0.45, 0.04), (0.55, 0.05),
    (0.60, 0.05), (0.40, 0.03), (0.35, 0.03), (0.35, 0.03), (0.40, 0.035), (0.55, 0.05),
    (0.75, 0.08), (0.80, 0.09), (0.75, 0.09), (0.65, 0.07), (0.45, 0.05), (0.20, 0.02),
)


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method; lam is small (re-weighs a day)."""
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _ts(day0: dt.datetime, seconds: float) -> str:
    return (day0 + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


class _Gen:
    def __init__(self, city: City, spec: TelemetrySpec, seed: int, start: dt.date) -> None:
        self.city, self.spec, self.rng = city, spec, random.Random(seed * 104729 + 3)
        # the faults added later draw from streams of their own: the main stream stays as it was
        self.zero_rng = random.Random(seed * 104729 + 5)
        self.hourly_rng = random.Random(seed * 104729 + 7)
        self.start = dt.datetime.combine(start, dt.time(0), tzinfo=TZ)
        self.truth = GroundTruth()
        self.by_type: dict[str, list[dict[str, str]]] = {}
        for inst in city.instruments:
            if inst["status"] in ("in_service", "installed"):
                self.by_type.setdefault(inst["instrument_type"], []).append(inst)

    def scales(self) -> Iterator[str]:
        rng, spec = self.rng, self.spec
        fair = {}
        stalls = []
        for inst in self.by_type.get("scale", []):
            if inst["place_key"] not in fair:
                fair[inst["place_key"]] = inst["device_id"]  # the first scale of a market is its fair scale
                continue
            stalls.append(inst)
        for inst in stalls:
            dev = inst["device_id"]
            r = rng.random()
            if r < spec.cheat_share:
                self.truth.cheating_scales[dev] = {"inflation": round(rng.uniform(0.03, 0.30), 4),
                                                   "from_day": rng.randrange(0, max(1, spec.days // 2)),
                                                   "part_of_day": float(rng.random() < 0.3)}
            elif r < spec.cheat_share + spec.drift_share:
                self.truth.drifting_scales[dev] = round(rng.choice([-1, 1]) * rng.uniform(0.002, 0.01), 4)
            elif r < spec.cheat_share + spec.drift_share + spec.padding_share:
                self.truth.padding_scales.add(dev)
        zr = self.zero_rng
        for inst in stalls:  # zero drift only on scales without another fault, decided on a stream of its own
            dev = inst["device_id"]
            if zr.random() < spec.zero_drift_share and not (dev in self.truth.cheating_scales or dev in
                                                            self.truth.drifting_scales or
                                                            dev in self.truth.padding_scales):
                sign = 1 if zr.random() < 0.75 else -1
                self.truth.zero_drift_scales[dev] = {"offset_g": round(sign * zr.uniform(15, 60), 1),
                                                     "from_day": zr.randrange(0, max(1, spec.days // 2))}
        for inst in stalls:
            dev, place = inst["device_id"], inst["place_key"]
            cheat = self.truth.cheating_scales.get(dev)
            drift = self.truth.drifting_scales.get(dev, 0.0)
            zero = self.truth.zero_drift_scales.get(dev)
            seq = 0

            def weigh(day: int, t: float, drift: float = drift, cheat: dict[str, float] | None = cheat,
                      zero: dict[str, float] | None = zero) -> tuple[int, int]:
                """A purchase's true weight and what this stall's scale shows for it."""
                true_g = int(rng.lognormvariate(6.5, 0.7))
                factor = 1.0 + drift
                if cheat and day >= cheat["from_day"] and not (cheat["part_of_day"] and t < 12 * 3600):
                    factor += cheat["inflation"]
                offset = zero["offset_g"] if zero and day >= zero["from_day"] else 0.0
                return true_g, max(1, round((true_g * factor + offset) / 5) * 5)

            for day in range(spec.days):
                day0 = self.start + dt.timedelta(days=day)
                for _ in range(spec.scale_txns_per_day):
                    seq += 1
                    t = rng.uniform(6 * 3600, 19 * 3600)
                    _true_g, shown = weigh(day, t)
                    price = rng.choice((800, 1200, 1600, 2400, 3600, 5800))
                    amount = round(shown * price / 1000) + (rng.randint(20, 200) if dev in self.truth.padding_scales
                                                           and rng.random() < 0.3 else 0)
                    yield (f'{{"kind":"scale.txn","device":"{dev}","ts":"{_ts(day0, t)}","seq":{seq},'
                           f'"net_g":{shown},"tare_g":0,"unit_price_fen_per_kg":{price},"amount_fen":{amount}}}')
                # customers re-weigh their purchase at the fair scale: a Poisson number a day per stall
                for _ in range(_poisson(rng, spec.rechecks_per_stall_per_day)):
                    t = rng.uniform(6 * 3600, 19 * 3600)
                    true_g, shown = weigh(day, t)
                    yield (f'{{"kind":"scale.recheck","place":"{place}","ts":"{_ts(day0, t + 120)}",'
                           f'"device":"{dev}","claimed_g":{shown},"actual_g":{true_g}}}')

    def chargers(self) -> Iterator[str]:
        rng, spec = self.rng, self.spec
        chargers = self.by_type.get("ev_charger_ac", []) + self.by_type.get("ev_charger_dc", [])
        if not chargers:
            return
        n_v = max(10, int(len(chargers) * spec.vehicles_per_charger))
        v_bias = [rng.gauss(0, 0.015) for _ in range(n_v)]
        v_home = [rng.randrange(len(chargers)) for _ in range(n_v)]
        for inst in chargers:
            out = rng.random() < spec.charger_out_share
            err = rng.choice([-1, 1]) * rng.uniform(2.5, 4.0) if out else rng.gauss(0, 0.4)
            self.truth.charger_error_pct[inst["device_id"]] = round(err, 4)
            if rng.random() < spec.charger_backwards_share:
                self.truth.backwards_chargers.add(inst["device_id"])
        register = {i["device_id"]: rng.randrange(10**6, 10**8) for i in chargers}
        seq = dict.fromkeys(register, 0)
        total = int(len(chargers) * spec.charger_sessions_per_day * spec.days)
        sessions = []
        for _ in range(total):
            v = rng.randrange(n_v)
            near = rng.random() < 0.8  # vehicles mostly charge near home
            ci = (v_home[v] + rng.randint(-5, 5)) % len(chargers) if near else rng.randrange(len(chargers))
            sessions.append((rng.uniform(0, spec.days * 86400), ci, v))
        sessions.sort()
        for t, ci, v in sessions:
            inst = chargers[ci]
            dev = inst["device_id"]
            seq[dev] += 1
            bms = rng.randint(5000, 60000)
            noise = rng.gauss(0, rng.uniform(0.02, 0.03))
            bias = math.log1p(self.truth.charger_error_pct[dev] / 100)
            energy = max(1, round(bms * math.exp(bias - v_bias[v] + noise)))
            start = register[dev]
            if dev in self.truth.backwards_chargers and seq[dev] == 5:
                start -= 5000  # the register jumps back once
            end = start + energy
            register[dev] = end
            minutes = max(10, energy // 120)
            yield (f'{{"kind":"charger.session","device":"{dev}","seq":{seq[dev]},"session_id":"{dev}-{seq[dev]}",'
                   f'"start_ts":"{_ts(self.start, t)}","end_ts":"{_ts(self.start, t + minutes * 60)}",'
                   f'"meter_start_wh":{start},"meter_end_wh":{end},"energy_wh":{energy},"vehicle":"veh-{v:05d}",'
                   f'"bms_energy_wh":{bms},"amount_fen":{round(energy * 1.2 / 10)}}}')

    def meters(self) -> Iterator[str]:
        rng, spec = self.rng, self.spec
        meters = self.by_type.get("water_meter", []) + self.by_type.get("gas_meter", [])
        for inst in meters:
            dev = inst["device_id"]
            r = rng.random()
            if r < spec.stuck_share:
                self.truth.stuck_meters[dev] = rng.randrange(1, max(2, spec.days - 3))
            elif r < spec.stuck_share + spec.reversed_share:
                self.truth.reversed_meters[dev] = rng.randrange(1, max(2, spec.days - 2))
        hr = self.hourly_rng
        for inst in self.by_type.get("water_meter", []):  # smart meters and leaks: a stream of their own
            dev = inst["device_id"]
            if hr.random() < spec.hourly_meter_share:
                self.truth.hourly_meters.add(dev)
                sound = dev not in self.truth.stuck_meters and dev not in self.truth.reversed_meters
                if hr.random() < spec.leak_share and sound:
                    self.truth.leaking_meters[dev] = hr.randrange(0, max(1, spec.days // 2))
                    self.truth.leak_l_per_h[dev] = round(hr.uniform(2, 20), 2)
        for inst in meters:
            dev = inst["device_id"]
            water = inst["instrument_type"] == "water_meter"
            daily = rng.uniform(0.15, 0.6) if water else rng.uniform(0.3, 1.5)  # m³ a day
            reg = rng.uniform(50, 900)
            stuck = self.truth.stuck_meters.get(dev)
            rev = self.truth.reversed_meters.get(dev)
            hourly = dev in self.truth.hourly_meters
            for day in range(spec.days):
                day_use = 0.0
                for k in range(spec.meter_readings_per_day):
                    use = daily / spec.meter_readings_per_day * rng.uniform(0.6, 1.4)
                    if stuck is not None and day >= stuck:
                        use = 0.0
                    elif rev is not None and day >= rev:
                        use = -use
                    flags = ',"flags":["reverse"]' if rev is not None and day >= rev and rng.random() < 0.5 else ""
                    if hourly:  # the same draws from the main stream, the readings made below
                        day_use += use
                        continue
                    reg = max(0.0, reg + use)
                    t = (day * 86400) + (k + 1) * 86400 / (spec.meter_readings_per_day + 1)
                    yield (f'{{"kind":"meter.reading","device":"{dev}","ts":"{_ts(self.start, t)}",'
                           f'"seq":{day * spec.meter_readings_per_day + k + 1},"register":{reg:.3f}{flags}}}')
                if hourly:
                    reg = yield from self._hourly_day(dev, day, reg, day_use, rev is not None and day >= rev)

    def _hourly_day(self, dev: str, day: int, reg: float, day_use: float, reversed_: bool
                    ) -> Generator[str, None, float]:
        """One day of an hourly smart water meter: the day's use spread over the hours it uses water
        (``HOURLY_PROFILE``), plus the leak once it has started; returns the register at the day's end."""
        hr = self.hourly_rng
        weights = [0.0] * 24
        for h, (p_use, share) in enumerate(HOURLY_PROFILE):
            if hr.random() < p_use:
                weights[h] = share / p_use * hr.lognormvariate(-0.125, 0.5)
        total = sum(weights)
        if total <= 0:
            weights[19], total = 1.0, 1.0
        leak = self.truth.leak_l_per_h.get(dev, 0.0) / 1000 if day >= self.truth.leaking_meters.get(dev, 10**9) \
            else 0.0
        for h in range(24):
            reg = max(0.0, reg + day_use * weights[h] / total + leak)
            flags = ',"flags":["reverse"]' if reversed_ and hr.random() < 0.5 else ""
            yield (f'{{"kind":"meter.reading","device":"{dev}","ts":"{_ts(self.start, day * 86400 + (h + 1) * 3600)}",'
                   f'"seq":{day * 24 + h + 1},"register":{reg:.3f}{flags}}}')
        return reg


def generate_telemetry(city: City, *, seed: int, spec: TelemetrySpec | None = None,
                       start: dt.date | None = None) -> tuple[list[str], GroundTruth]:
    """All records as NDJSON lines (str) and the ground truth.  ``start`` defaults to ``days`` before the
    city's ``as_of`` so the last reading is yesterday."""
    spec = spec or TelemetrySpec()
    start = start or city.as_of - dt.timedelta(days=spec.days)
    g = _Gen(city, spec, seed, start)
    lines = [*g.scales(), *g.chargers(), *g.meters()]
    return lines, g.truth


def dumps_truth(truth: GroundTruth) -> str:
    return json.dumps(truth.as_dict(), ensure_ascii=False, indent=1, sort_keys=True)
