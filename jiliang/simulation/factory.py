"""Simulated authorized manufacturers and their factory verification data (二检合一), with ground truth.

Pure: no Django.  Each manufacturer makes cold-water meters (饮用冷水水表, JJG 162, class 2) of a few models
and sizes within DN15–DN40, in production batches (one per production day).  Every unit is verified at
Q1, Q2 and Q3; its error at a point is the manufacturer's bias there plus unit noise.  One manufacturer
(``drifting``) drifts: its Q3 and Q2 bias grows by ``drift_per_batch`` % with every batch, so its later
batches' mean error no longer tends to zero (the ground truth ``bias`` says by how much).  A small share
of units fails verification (the conclusion says so, as a truthful manufacturer reports it).

>>> w = generate_factory(FactorySpec(manufacturers=2, batches=2, units_per_batch=5), seed=1)
>>> len(w.units), sorted(w.units[0])[:4], w.drifting_uscc == w.manufacturers[1]["uscc"]
(20, ['accuracy_class', 'batch', 'conclusion', 'institution'], True)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jiliang.engine.uscc import with_check_character

POINTS = ("Q1", "Q2", "Q3")
MPE = {"Q1": 5.0, "Q2": 2.0, "Q3": 2.0}  # class 2, initial verification (the rule engine judges the upload)
MODELS = (("LXS-15E", 15, 2.5, 100), ("LXS-20E", 20, 4.0, 100), ("LXS-25E", 25, 6.3, 100))
NAMES = ("宁波水表股份有限公司", "三川智慧科技股份有限公司", "泰安市汇通水表有限公司", "上海埃创水表有限公司",
         "杭州竞达电子有限公司", "山东龙腾仪表有限公司")


@dataclass(frozen=True)
class FactorySpec:
    manufacturers: int = 3
    batches: int = 6
    units_per_batch: int = 200
    drifting: int = 1  # index of the drifting manufacturer (-1: none)
    drift_per_batch: float = 0.18  # % added to the Q2/Q3 bias with every batch
    noise_sd: float = 0.35  # % unit-to-unit
    fail_share: float = 0.003
    region: str = "440306"  # 宝安区 (the simulated city)
    start: dt.date = dt.date(2025, 3, 3)


@dataclass
class FactoryWorld:
    manufacturers: list[dict[str, str]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    units: list[dict[str, Any]] = field(default_factory=list)
    bias: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (uscc, batch, point) -> true bias %
    drifting_uscc: str | None = None


def maker_uscc(region: str, k: int) -> str:
    return with_check_character(f"91{region}MA7F{k:05d}")


def generate_factory(spec: FactorySpec = FactorySpec(), seed: int = 2025) -> FactoryWorld:
    rng = np.random.default_rng(seed)
    w = FactoryWorld()
    for k in range(spec.manufacturers):
        code = maker_uscc(spec.region, k + 1)
        w.manufacturers.append({"uscc": code, "name": NAMES[k % len(NAMES)] + ("" if k < len(NAMES) else f"{k}"),
                                "region_code": spec.region})
        for name, dn, q3, r in MODELS:
            w.models.append({"maker_uscc": code, "name": name, "instrument_type": "water_meter",
                             "accuracy_class": "2", "params": {"Q3_m3h": q3, "R": r, "DN_mm": dn}})
    if 0 <= spec.drifting < spec.manufacturers:
        w.drifting_uscc = w.manufacturers[spec.drifting]["uscc"]
    for k, m in enumerate(w.manufacturers):
        base = rng.normal(0.0, 0.05, size=3)  # a good maker's bias is small
        prefix = f"M{k + 1:02d}"
        serial_no = 0
        for b in range(spec.batches):
            day = spec.start + dt.timedelta(days=7 * b)
            model = MODELS[b % len(MODELS)]
            batch = f"{model[0]}-{day:%Y%m%d}"
            bias = base.copy()
            if m["uscc"] == w.drifting_uscc:
                bias[1] += spec.drift_per_batch * b * 0.6
                bias[2] += spec.drift_per_batch * b
            for p, v in zip(POINTS, bias.tolist(), strict=True):
                w.bias[(m["uscc"], batch, p)] = v
            n = spec.units_per_batch
            errs = rng.normal(bias, [spec.noise_sd * 2, spec.noise_sd, spec.noise_sd], size=(n, 3))
            bad = rng.random(n) < spec.fail_share
            errs[bad, 2] = np.sign(errs[bad, 2] + 1e-9) * 2.6  # a failing unit: Q3 beyond the 2 % MPE
            errs = np.round(errs, 3)
            verified = day + dt.timedelta(days=1)
            limits = np.array([MPE[p] for p in POINTS])
            fails = [bool(np.any(np.abs(row) > limits)) for row in errs]
            for i in range(n):
                serial_no += 1
                e = errs[i]
                w.units.append({
                    "name": "饮用冷水水表", "model": model[0], "size": f"DN{model[1]}",
                    "serial": f"{prefix}{serial_no:08d}", "accuracy_class": "2", "maker": m["uscc"],
                    "production_date": day.isoformat(), "verification_date": verified.isoformat(),
                    "conclusion": "不合格" if fails[i] else "合格", "institution": m["name"] + "计量室",
                    "batch": batch,
                    "points": [{"point": "Q1", "error_pct": float(e[0])}, {"point": "Q2", "error_pct": float(e[1])},
                               {"point": "Q3", "error_pct": float(e[2])}],
                })
    return w


def bulk_units(n: int, maker: str, *, seed: int = 7, start: dt.date = dt.date(2025, 3, 3),
               per_batch: int = 5000, prefix: str = "B") -> list[dict[str, Any]]:
    """``n`` conforming units of one manufacturer for benchmarks: model LXS-15E (DN15), 3 points each."""
    rng = np.random.default_rng(seed)
    errs = np.round(rng.normal(0.0, [0.6, 0.3, 0.3], size=(n, 3)), 3).clip(-1.9, 1.9)
    out: list[dict[str, Any]] = []
    days = [(start + dt.timedelta(days=d)) for d in range(max(1, n // per_batch + 1))]
    for i in range(n):
        day = days[i // per_batch]
        e = errs[i]
        out.append({"name": "饮用冷水水表", "model": "LXS-15E", "size": "DN15", "serial": f"{prefix}{i:09d}",
                    "accuracy_class": "2", "maker": maker, "production_date": day.isoformat(),
                    "verification_date": (day + dt.timedelta(days=1)).isoformat(), "conclusion": "合格",
                    "institution": "出厂检定室", "points": [{"point": "Q1", "error_pct": float(e[0])},
                                                       {"point": "Q2", "error_pct": float(e[1])},
                                                       {"point": "Q3", "error_pct": float(e[2])}]})
    return out
