"""The MPE rule engine against the reference tables (../shared/reference/metrology.yaml, copied into
jiliang/engine/data/mpe.yaml), plus properties that must hold for every type."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jiliang.engine.rules import RuleError, evaluate, judge, load_tables

WATER = {"Q3_m3h": 2.5, "R": 100}


def one(itype: str, cls: str | None, point: dict[str, Any], params: dict[str, Any] | None = None,
        stage: str = "initial") -> dict[str, Any]:
    req: dict[str, Any] = {"instrument_type": itype, "stage": stage, "params": params or {}, "points": [point]}
    if cls is not None:
        req["accuracy_class"] = cls
    return dict(evaluate(req)["points"][0])


# (type, class, stage, params, point-without-error, error key, expected MPE) — values from the reference file
CASES: list[tuple[str, str | None, str, dict[str, Any], dict[str, Any], str, float]] = [
    ("water_meter", "2", "initial", WATER, {"point": "Q1"}, "error_pct", 5.0),
    ("water_meter", "2", "initial", WATER, {"point": "Q2"}, "error_pct", 2.0),
    ("water_meter", "2", "initial", WATER, {"point": "Q3"}, "error_pct", 2.0),
    ("water_meter", "2", "initial", WATER, {"point": "Q4"}, "error_pct", 2.0),
    ("water_meter", "2", "initial", WATER, {"point": "Q3", "water_temp_c": 45}, "error_pct", 3.0),
    ("water_meter", "1", "initial", {"Q3_m3h": 100, "R": 100}, {"point": "Q1"}, "error_pct", 3.0),
    ("water_meter", "1", "initial", {"Q3_m3h": 100, "R": 100}, {"point": "Q3"}, "error_pct", 1.0),
    ("water_meter", "1", "initial", {"Q3_m3h": 100, "R": 100}, {"point": "Q2", "water_temp_c": 31}, "error_pct", 2.0),
    ("water_meter", "2", "in_service", WATER, {"point": "Q3"}, "error_pct", 4.0),
    ("gas_meter", "1.5", "initial", {"qmax_m3h": 6}, {"flow_m3h": 0.04}, "error_pct", 3.0),
    ("gas_meter", "1.5", "initial", {"qmax_m3h": 6}, {"flow_m3h": 0.6}, "error_pct", 1.5),   # q = qt: upper zone
    ("gas_meter", "1.5", "initial", {"qmax_m3h": 6}, {"flow_m3h": 6}, "error_pct", 1.5),
    ("gas_meter", "1.0", "initial", {"qmax_m3h": 6}, {"flow_m3h": 0.5}, "error_pct", 2.0),
    ("gas_meter", "1.0", "initial", {"qmax_m3h": 6}, {"flow_m3h": 1.2}, "error_pct", 1.0),
    ("gas_meter", "1.5", "in_service", {"qmax_m3h": 6}, {"flow_m3h": 6}, "error_pct", 3.0),
    ("scale", "III", "initial", {"e_g": 5, "max_g": 15000}, {"load_g": 0}, "error_g", 2.5),
    ("scale", "III", "initial", {"e_g": 5, "max_g": 15000}, {"load_g": 2500}, "error_g", 2.5),     # 500 e
    ("scale", "III", "initial", {"e_g": 5, "max_g": 15000}, {"load_g": 2505}, "error_g", 5.0),     # 501 e
    ("scale", "III", "initial", {"e_g": 5, "max_g": 15000}, {"load_g": 10000}, "error_g", 5.0),    # 2000 e
    ("scale", "III", "initial", {"e_g": 5, "max_g": 15000}, {"load_g": 10005}, "error_g", 7.5),
    ("scale", "III", "initial", {"e_g": 5, "max_g": 15000}, {"load_g": 15000}, "error_g", 7.5),
    ("scale", "III", "in_service", {"e_g": 5, "max_g": 15000}, {"load_g": 15000}, "error_g", 15.0),
    ("scale", "III", "initial", {"e_g": 0.1, "max_g": 600}, {"load_g": 300}, "error_g", 0.15),     # 3000 e
    ("scale", "IIII", "initial", {"e_g": 50, "max_g": 50000}, {"load_g": 2500}, "error_g", 25.0),  # 50 e
    ("scale", "IIII", "initial", {"e_g": 50, "max_g": 50000}, {"load_g": 2550}, "error_g", 50.0),
    ("scale", "IIII", "initial", {"e_g": 50, "max_g": 50000}, {"load_g": 50000}, "error_g", 75.0),
    ("fuel_dispenser", "0.3", "initial", {}, {"point": "Qmax"}, "error_pct", 0.3),
    ("fuel_dispenser", "0.3", "in_service", {}, {"point": "Qmax"}, "error_pct", 0.3),
    ("ev_charger_ac", "1", "initial", {}, {"point": "Imax"}, "error_pct", 1.0),
    ("ev_charger_ac", "2", "initial", {}, {"point": "Imin"}, "error_pct", 2.0),
    ("ev_charger_dc", "1", "initial", {}, {"point": "Imax"}, "error_pct", 1.0),
    ("ev_charger_dc", "2", "in_service", {}, {"point": "Imax"}, "error_pct", 2.0),
    ("electricity_meter", "1", "initial", {}, {"current_ratio": 0.05, "power_factor": "1.0"}, "error_pct", 1.5),
    ("electricity_meter", "2", "initial", {}, {"current_ratio": 0.05, "power_factor": "1.0"}, "error_pct", 2.5),
    ("electricity_meter", "1", "initial", {}, {"current_ratio": 0.1, "power_factor": "1.0"}, "error_pct", 1.0),
    ("electricity_meter", "2", "initial", {}, {"current_ratio": 4.0, "power_factor": "1.0"}, "error_pct", 2.0),
    ("electricity_meter", "1", "initial", {}, {"current_ratio": 0.1, "power_factor": "0.5L"}, "error_pct", 1.5),
    ("electricity_meter", "2", "initial", {}, {"current_ratio": 0.15, "power_factor": "0.8C"}, "error_pct", 2.5),
    ("electricity_meter", "1", "initial", {}, {"current_ratio": 0.2, "power_factor": "0.5L"}, "error_pct", 1.0),
    ("electricity_meter", "2", "initial", {}, {"current_ratio": 1.0, "power_factor": "0.8C"}, "error_pct", 2.0),
]


@pytest.mark.parametrize(("itype", "cls", "stage", "params", "point", "key", "mpe"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_reference_mpe(itype: str, cls: str, stage: str, params: dict[str, Any], point: dict[str, Any], key: str,
                       mpe: float) -> None:
    on = one(itype, cls, {**point, key: mpe}, params, stage)
    assert on["mpe"] == pytest.approx(mpe) and on["verdict"] == "pass" and on["margin"] == 0
    neg = one(itype, cls, {**point, key: -mpe}, params, stage)
    assert neg["verdict"] == "pass"
    over = one(itype, cls, {**point, key: math.nextafter(mpe, math.inf)}, params, stage)
    assert over["verdict"] == "fail" and over["margin"] <= 0
    inside = one(itype, cls, {**point, key: mpe / 2}, params, stage)
    assert inside["margin"] == pytest.approx(mpe / 2)


def test_taxi_meter_asymmetric_limits() -> None:
    ok_low = one("taxi_meter", None, {"point": "1 km", "error_pct": -4.0})
    assert ok_low["verdict"] == "pass" and (ok_low["mpe_lower"], ok_low["mpe_upper"]) == (-4.0, 1.0)
    assert one("taxi_meter", None, {"error_pct": 1.0})["verdict"] == "pass"
    assert one("taxi_meter", None, {"error_pct": 1.01})["verdict"] == "fail"
    assert one("taxi_meter", None, {"error_pct": -4.01})["verdict"] == "fail"
    # margin is the distance to the nearer limit
    assert one("taxi_meter", None, {"error_pct": -0.3})["margin"] == pytest.approx(1.3)
    assert one("taxi_meter", None, {"error_pct": -3.5})["margin"] == pytest.approx(0.5)
    assert one("taxi_meter", None, {"error_pct": 2.0})["margin"] == pytest.approx(-1.0)


def test_spec_example() -> None:
    out = evaluate({"instrument_type": "water_meter", "accuracy_class": "2", "stage": "initial",
                    "params": {"Q3_m3h": 2.5, "R": 100},
                    "points": [{"point": "Q1", "error_pct": 3.1}, {"point": "Q2", "error_pct": 1.2},
                               {"point": "Q3", "error_pct": -0.4}]})
    assert out == {"conforming": True, "points": [
        {"point": "Q1", "mpe": 5.0, "verdict": "pass", "margin": 1.9},
        {"point": "Q2", "mpe": 2.0, "verdict": "pass", "margin": 0.8},
        {"point": "Q3", "mpe": 2.0, "verdict": "pass", "margin": 1.6}]}


@pytest.mark.parametrize(("request_", "field"), [
    ({"instrument_type": "thermometer", "accuracy_class": "1", "points": [{"error_pct": 1}]}, "instrument_type"),
    ({"instrument_type": "water_meter", "accuracy_class": "3", "params": WATER,
      "points": [{"point": "Q1", "error_pct": 1}]}, "accuracy_class"),
    ({"instrument_type": "water_meter", "params": WATER, "points": [{"point": "Q1", "error_pct": 1}]},
     "accuracy_class"),
    ({"instrument_type": "water_meter", "accuracy_class": "2", "params": WATER,
      "points": [{"point": "Q5", "error_pct": 1}]}, "points[0].point"),
    ({"instrument_type": "water_meter", "accuracy_class": "2", "params": {"R": 100},
      "points": [{"point": "Q1", "error_pct": 1}]}, "params.Q3_m3h"),
    ({"instrument_type": "water_meter", "accuracy_class": "2", "params": WATER,
      "points": [{"point": "Q1"}]}, "points[0].error_pct"),
    ({"instrument_type": "scale", "accuracy_class": "III", "params": {"e_g": 5, "max_g": 15000},
      "points": [{"load_g": 16000, "error_g": 0}]}, "points[0].load_g"),
    ({"instrument_type": "gas_meter", "accuracy_class": "1.5", "params": {"qmax_m3h": 6},
      "points": [{"flow_m3h": 7, "error_pct": 0}]}, "points[0].flow_m3h"),
    ({"instrument_type": "electricity_meter", "accuracy_class": "2",
      "points": [{"current_ratio": 0.05, "power_factor": "0.5L", "error_pct": 0}]}, "points[0].current_ratio"),
    ({"instrument_type": "electricity_meter", "accuracy_class": "2",
      "points": [{"current_ratio": 1, "power_factor": "0.9", "error_pct": 0}]}, "points[0].power_factor"),
    ({"instrument_type": "fuel_dispenser", "accuracy_class": "0.3", "stage": "later",
      "points": [{"error_pct": 0}]}, "stage"),
    ({"instrument_type": "fuel_dispenser", "accuracy_class": "0.3", "points": []}, "points"),
    ({"instrument_type": "fuel_dispenser", "accuracy_class": "0.3", "points": [{"error_pct": "0.1"}]},
     "points[0].error_pct"),
])
def test_errors_name_the_field(request_: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleError) as exc:
        evaluate(request_)
    assert exc.value.field == field
    assert str(exc.value)


SYMMETRIC_SETUPS: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    ("water_meter", "2", WATER, {"point": "Q2"}, "error_pct"),
    ("gas_meter", "1.5", {"qmax_m3h": 10}, {"flow_m3h": 0.5}, "error_pct"),
    ("scale", "III", {"e_g": 2, "max_g": 6000}, {"load_g": 1500}, "error_g"),
    ("fuel_dispenser", "0.3", {}, {"point": "x"}, "error_pct"),
    ("ev_charger_dc", "2", {}, {"point": "x"}, "error_pct"),
    ("electricity_meter", "2", {}, {"current_ratio": 0.15, "power_factor": "0.5L"}, "error_pct"),
]


@settings(max_examples=300, deadline=None)
@given(setup=st.sampled_from(SYMMETRIC_SETUPS), err=st.floats(-20, 20, allow_nan=False))
def test_verdict_flips_exactly_at_the_mpe(setup: tuple[str, str, dict[str, Any], dict[str, Any], str],
                                          err: float) -> None:
    itype, cls, params, point, key = setup
    mpe = one(itype, cls, {**point, key: 0.0}, params)["mpe"]
    r = one(itype, cls, {**point, key: err}, params)
    assert (r["verdict"] == "pass") == (abs(err) <= mpe)
    assert (r["margin"] >= 0) == (r["verdict"] == "pass") or r["margin"] == 0


@settings(max_examples=200, deadline=None)
@given(setup=st.sampled_from(SYMMETRIC_SETUPS), err=st.floats(-20, 20, allow_nan=False))
def test_in_service_is_never_stricter_than_initial(setup: tuple[str, str, dict[str, Any], dict[str, Any], str],
                                                   err: float) -> None:
    itype, cls, params, point, key = setup
    initial = one(itype, cls, {**point, key: err}, params)
    later = one(itype, cls, {**point, key: err}, params, stage="in_service")
    assert later["mpe"] >= initial["mpe"]
    if initial["verdict"] == "pass":
        assert later["verdict"] == "pass"


def test_vectorised_judge_matches_scalar() -> None:
    rng = np.random.default_rng(7)
    errors = rng.normal(0, 2, 10_000)
    mpe = np.full(errors.shape, 2.0)
    ok, margin = judge(errors, -mpe, mpe)
    assert np.array_equal(ok, np.abs(errors) <= 2.0)
    assert np.allclose(margin, 2.0 - np.abs(errors), atol=1e-9)


def test_overrides_file_replaces_low_confidence_defaults(tmp_path: Any) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("gas_meter:\n  in_service_factor:\n    value: 1.5\n", encoding="utf-8")
    tables = load_tables(str(f))
    req = {"instrument_type": "gas_meter", "accuracy_class": "1.5", "stage": "in_service",
           "params": {"qmax_m3h": 6}, "points": [{"flow_m3h": 6, "error_pct": 0}]}
    assert evaluate(req, tables)["points"][0]["mpe"] == pytest.approx(2.25)
    assert evaluate(req, load_tables(""))["points"][0]["mpe"] == pytest.approx(3.0)


def test_every_low_confidence_value_is_marked_in_the_data() -> None:
    tables = load_tables("")
    lows = [t for t, v in tables.items() if v.get("in_service_factor", {}).get("confidence") == "low"]
    assert {"gas_meter", "ev_charger_ac", "ev_charger_dc", "electricity_meter"} <= set(lows)


def test_evaluate_many_equals_evaluate_one_by_one() -> None:
    import random

    from jiliang.engine.rules import evaluate_many

    rng = random.Random(5)
    reqs: list[dict[str, Any]] = []
    for _ in range(400):
        kind = rng.choice(["water", "scale", "fuel", "taxi", "elec", "gas", "bad"])
        if kind == "water":
            r = {"instrument_type": "water_meter", "accuracy_class": "2", "params": WATER,
                 "points": [{"point": rng.choice(["Q1", "Q2", "Q3"]), "error_pct": rng.uniform(-6, 6)}
                            for _ in range(rng.randint(1, 4))]}
        elif kind == "scale":
            r = {"instrument_type": "scale", "accuracy_class": "III", "params": {"e_g": 5, "max_g": 15000},
                 "stage": rng.choice(["initial", "in_service"]),
                 "points": [{"load_g": rng.uniform(0, 15000), "error_g": rng.uniform(-9, 9)} for _ in range(3)]}
        elif kind == "fuel":
            r = {"instrument_type": "fuel_dispenser", "accuracy_class": "0.3",
                 "points": [{"error_pct": rng.uniform(-0.5, 0.5)} for _ in range(rng.randint(1, 3))]}
        elif kind == "taxi":
            r = {"instrument_type": "taxi_meter", "points": [{"error_pct": rng.uniform(-5, 2)}]}
        elif kind == "elec":
            r = {"instrument_type": "electricity_meter", "accuracy_class": "2",
                 "points": [{"current_ratio": rng.choice([0.05, 0.1, 1.0]), "power_factor": "1.0",
                             "error_pct": rng.uniform(-3, 3)}]}
        elif kind == "gas":
            r = {"instrument_type": "gas_meter", "accuracy_class": "1.5", "params": {"qmax_m3h": 6},
                 "points": [{"flow_m3h": rng.choice([0.1, 0.6, 6, 7]), "error_pct": rng.uniform(-4, 4)}]}
        else:
            r = {"instrument_type": "water_meter", "accuracy_class": "2", "params": WATER,
                 "points": [{"point": "Q9", "error_pct": 1.0}]}
        reqs.append(r)
    many = evaluate_many(reqs)
    for r, got in zip(reqs, many, strict=True):
        try:
            want: Any = evaluate(r)
        except RuleError as exc:
            assert isinstance(got, RuleError) and str(got) == str(exc)
            continue
        assert got == want
