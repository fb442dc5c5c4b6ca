"""Verification history of the simulated city (检定记录), with each instrument's true error as ground truth.

Pure: no Django.  For every instrument a true error is drawn (most well inside the MPE, about 2 % outside),
and its latest verification is generated as the SPEC 3.5 ``verifications`` import rows, measured with a
little noise at the regulation's test points:

- periodic types (scales 12 months, fuel dispensers 6, chargers 36): the last verification falls somewhere
  in the last 1.15 periods, so a share is due soon and some are overdue, as in a real city;
- first-verification-only meters (water, gas): the first verification at installation (its service life
  runs from there).

Each institute verifies the types it is specialised in (the water and gas meter centre the meters, the
charging centre the chargers, the city institute and the district institutes the rest).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field

from jiliang.simulation.city import City, Row

VERIFICATION_COLUMNS = ("device_id", "kind", "date", "institution_uscc", "points", "stage", "certificate_no",
                        "verifier")
PERIOD_MONTHS = {"scale": 12, "fuel_dispenser": 6, "ev_charger_ac": 36, "ev_charger_dc": 36}
# MPE used to draw realistic true errors (the rule engine, not this table, judges the rows)
MPE_PCT = {"water_meter": 2.0, "gas_meter": 1.5, "fuel_dispenser": 0.3, "ev_charger_ac": 2.0, "ev_charger_dc": 2.0}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"


@dataclass
class VerificationSet:
    rows: list[Row] = field(default_factory=list)
    true_error: dict[str, float] = field(default_factory=dict)  # device_id -> true error (% or, scales, in e)


def _institutes(city: City) -> dict[str, str]:
    """Institute name → credit code."""
    return {o["name"]: o["uscc"] for o in city.organizations if "verification_institute" in o["kinds"]}


def _pick_institute(itype: str, region: str, institutes: dict[str, str]) -> str:
    by_name = dict(institutes)
    if itype in ("water_meter", "gas_meter"):
        for name, code in by_name.items():
            if "水表燃气表" in name:
                return code
    if itype.startswith("ev_charger"):
        for name, code in by_name.items():
            if "充电设施" in name:
                return code
    district_names = {"440306": "宝安区", "440307": "龙岗区"}
    for name, code in by_name.items():
        if region in district_names and district_names[region] in name:
            return code
    return next(code for name, code in by_name.items() if "研究院" in name)


def generate_verifications(city: City, seed: int) -> VerificationSet:
    rng = random.Random(seed * 7919 + 17)
    institutes = _institutes(city)
    places = {p["key"]: p["region_code"] for p in city.places}
    out = VerificationSet()
    numbers: dict[str, int] = {}
    for inst in city.instruments:
        itype = inst["instrument_type"]
        params = json.loads(inst["params"] or "{}")
        region = places.get(inst["place_key"], "440300")
        faulty = rng.random() < 0.02
        if itype == "scale":
            true = rng.choice([-1, 1]) * rng.uniform(1.2, 3.0) if faulty else rng.gauss(0, 0.2)  # in e
        else:
            mpe = MPE_PCT.get(itype, 2.0)
            true = rng.choice([-1, 1]) * mpe * rng.uniform(1.3, 2.5) if faulty else rng.gauss(0, mpe / 5)
        out.true_error[inst["device_id"]] = true
        if itype in PERIOD_MONTHS:
            span = int(PERIOD_MONTHS[itype] * 30.4 * 1.15)
            date = city.as_of - dt.timedelta(days=rng.randrange(1, span))
            kind = "periodic"
        else:
            installed = dt.date.fromisoformat(inst["install_date"]) if inst["install_date"] else city.as_of
            date = installed - dt.timedelta(days=rng.randrange(1, 20))
            kind = "first"
        install = inst["install_date"]
        if install and date < dt.date.fromisoformat(install) - dt.timedelta(days=30) and kind == "periodic":
            date = dt.date.fromisoformat(install)
        date = min(date, city.as_of - dt.timedelta(days=1))
        points = _points(itype, params, true, rng)
        if points is None:
            continue
        code = _pick_institute(itype, region, institutes)
        year = date.year
        numbers[f"{code}{year}"] = numbers.get(f"{code}{year}", 0) + 1
        out.rows.append({
            "device_id": inst["device_id"], "kind": kind, "date": date.isoformat(), "institution_uscc": code,
            "points": json.dumps(points, ensure_ascii=False), "stage": "initial",
            "certificate_no": f"JD{year}-{code[8:14]}-{numbers[f'{code}{year}']:06d}",
            "verifier": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
        })
    return out


def _noise(rng: random.Random, sd: float) -> float:
    return rng.gauss(0, sd)


def _points(itype: str, params: dict[str, float], true: float, rng: random.Random) -> list[dict[str, object]] | None:
    if itype == "scale":
        e = float(params.get("e_g", 5))
        top = float(params.get("max_g", 15000))
        loads = [round(top * f / e) * e for f in (0.02, 0.25, 0.5, 1.0)]
        return [{"load_g": load, "error_g": round((true + _noise(rng, 0.1)) * e, 1)} for load in loads]
    if itype == "water_meter":
        return [{"point": p, "error_pct": round(true * k + _noise(rng, 0.15), 2)}
                for p, k in (("Q1", 1.8), ("Q2", 1.0), ("Q3", 1.0))]
    if itype == "gas_meter":
        qmax = float(params.get("qmax_m3h", 6))
        return [{"flow_m3h": round(q, 3), "error_pct": round(true * k + _noise(rng, 0.1), 2)}
                for q, k in ((qmax * 0.016, 1.8), (qmax * 0.2, 1.0), (qmax, 1.0))]
    if itype == "fuel_dispenser":
        return [{"point": p, "error_pct": round(true + _noise(rng, 0.02), 3)} for p in ("Qmax", "Qmin")]
    if itype in ("ev_charger_ac", "ev_charger_dc"):
        return [{"point": p, "error_pct": round(true + _noise(rng, 0.05), 3)} for p in ("Imax", "Imin")]
    return None
