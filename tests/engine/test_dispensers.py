"""Fuel dispenser / tank estimator (加油机误差与油罐渗漏) on synthetic tanks whose truth is known."""

from __future__ import annotations

import doctest
from dataclasses import dataclass

import numpy as np
import pytest

from jiliang.engine.estimators import dispensers
from jiliang.engine.estimators.dispensers import estimate_fleet, estimate_tank

HOURLY = np.array([0.1, 0.05, 0.05, 0.05, 0.05, 0.2, 0.6, 1.3, 1.7, 1.4, 1.2, 1.2,
                   1.3, 1.2, 1.1, 1.2, 1.4, 1.7, 1.8, 1.5, 1.2, 0.9, 0.6, 0.3])


@dataclass
class Tank:
    reading_h: np.ndarray
    gauge_l: np.ndarray
    temp_c: np.ndarray
    delivery_h: np.ndarray
    sale_h: np.ndarray
    sale_nozzle: np.ndarray
    sale_l: np.ndarray


def tank(seed: int, *, errors_pct: tuple[float, ...] = (0.1, -0.05, 0.0), leak: float = 0.0, days: int = 30,
         noise_l: float = 2.0, drift: tuple[int, float, float] | None = None, beta: float = 0.0012,
         per_day: float = 50.0, flat: bool = False) -> Tank:
    """A tank with its nozzles' sales (day/night pattern), hourly gauge readings with white noise, deliveries
    when low with warmer fuel cooling back to the ground temperature.  ``drift`` = (nozzle, day, pct)."""
    rng = np.random.default_rng(seed)
    n_noz = len(errors_pct)
    p = HOURLY / HOURLY.sum() if not flat else np.full(24, 1 / 24)
    hours = days * 24
    sale_h, sale_n = [], []
    for n in range(n_noz):
        k = rng.poisson(per_day * days * rng.uniform(0.7, 1.3))
        sale_h.append(rng.integers(0, days, k) * 24 + rng.choice(24, k, p=p) + rng.uniform(0.01, 0.99, k))
        sale_n.append(np.full(k, n))
    sh = np.concatenate(sale_h)
    sn = np.concatenate(sale_n)
    order = np.argsort(sh)
    sh, sn = sh[order], sn[order]
    true = rng.uniform(15, 60, sh.size)
    err = np.array(errors_pct)[sn] / 100
    if drift is not None:
        err = err + np.where((sn == drift[0]) & (sh >= drift[1] * 24), drift[2] / 100, 0.0)
    shown = np.round(true * (1 + err), 2)
    per_hour = np.bincount(sh.astype(int), weights=true, minlength=hours)
    inv, temp, ground = 24000.0, 22.0, 22.0
    g, temps, deliveries = [], [], []
    settle = False
    for h in range(hours + 1):
        if h:
            if inv < 9000:
                d_h = h - 1 + 0.5
                deliveries.append(d_h)
                add = 18000.0
                temp = (inv * temp + add * (ground + 3.0)) / (inv + add)
                inv += add
                settle = True
            inv -= per_hour[h - 1] / (1 + beta * (temp - 20))
            inv -= leak
            temp = ground + (temp - ground) * np.exp(-1 / 36)
        g.append(inv * (1 + beta * (temp - 20)) + rng.normal(0, noise_l) + (rng.normal(0, 8) if settle else 0.0))
        settle = False
        temps.append(round(temp, 2))
    return Tank(np.arange(hours + 1.0), np.array(g), np.array(temps), np.array(deliveries), sh, sn, shown)


def fit(t: Tank, **kw: object) -> dispensers.TankEstimate:
    return estimate_tank(reading_h=t.reading_h, gauge_l=t.gauge_l, temp_c=t.temp_c, delivery_h=t.delivery_h,
                         sale_h=t.sale_h, sale_nozzle=t.sale_nozzle, sale_l=t.sale_l,
                         n_nozzles=int(t.sale_nozzle.max()) + 1, **kw)  # type: ignore[arg-type]


def test_doctest() -> None:
    assert doctest.testmod(dispensers).failed == 0


def test_recovers_errors_and_leak_with_interval_coverage() -> None:
    truth = np.array([0.1, -0.05, 0.0])
    hits, leak_hits, n = 0, 0, 0
    for seed in range(20):
        t = tank(seed, errors_pct=tuple(truth), leak=0.5)
        est = fit(t)
        assert np.all(np.abs(est.error_pct - truth) < 0.2), est.error_pct
        assert abs(est.leak_l_per_h - 0.5) < 0.2 and est.leak_detected()
        hits += int(np.sum(np.abs(est.error_pct - truth) <= est.ci95_pct))
        leak_hits += int(abs(est.leak_l_per_h - 0.5) <= est.leak_ci95)
        n += 3
        assert est.segments > 3 and not est.drift_flagged.any()
        assert 0.0008 < est.beta_per_c < 0.0016  # the thermal coefficient is found (truth 0.0012)
    assert hits / n >= 0.88, hits / n
    assert leak_hits >= 17, leak_hits


def test_no_leak_few_false_alarms_and_a_leak_of_0_38_is_found() -> None:
    false = sum(fit(tank(100 + seed, leak=0.0)).leak_detected() for seed in range(30))
    found = sum(fit(tank(200 + seed, leak=0.38)).leak_detected() for seed in range(30))
    assert false == 0 and found == 30, (false, found)


def test_temperature_is_compensated() -> None:
    t = tank(7, leak=0.0, beta=0.0012)
    with_temp = fit(t)
    without = estimate_tank(reading_h=t.reading_h, gauge_l=t.gauge_l, delivery_h=t.delivery_h, sale_h=t.sale_h,
                            sale_nozzle=t.sale_nozzle, sale_l=t.sale_l, n_nozzles=3)
    assert abs(with_temp.leak_l_per_h) < 0.1
    # warm deliveries cooling down look like a loss when the temperature is ignored
    assert without.leak_l_per_h > with_temp.leak_l_per_h + 0.1
    assert np.isnan(without.beta_per_c)


def test_drift_is_flagged_on_the_drifting_nozzle() -> None:
    flagged_top = 0
    for seed in range(6):
        t = tank(300 + seed, errors_pct=(0.05, -0.05, 0.0), drift=(1, 20, 0.3), leak=0.2)
        est = fit(t)
        assert est.drift_flagged[1], (seed, est.drift_p, est.drift_score)
        flagged_top += int(np.argmax(est.drift_p) == 1)
        assert abs(est.drift_pct[1] - 0.3) < 0.1
        assert abs(est.error_pct[1] - 0.25) < 0.1  # the current error: −0.05 + 0.3
        assert abs(est.drift_from_h[1] - 20 * 24) <= 24
        assert est.drift_score >= dispensers.DRIFT_Z
    assert flagged_top >= 5


def test_no_drift_no_flag_and_the_scan_can_be_turned_off() -> None:
    flags = sum(int(fit(tank(400 + seed)).drift_flagged.sum()) for seed in range(20))
    assert flags == 0
    est = fit(tank(1, drift=(0, 15, 0.5)), drift_scan=False)
    assert not est.drift_flagged.any() and np.isnan(est.drift_pct).all() and np.isnan(est.drift_score)


def test_exceeds_only_when_the_whole_interval_is_outside() -> None:
    est = fit(tank(5, errors_pct=(0.8, 0.0, -0.7)))
    assert est.exceeds(0.3).tolist() == [True, False, True]
    assert fit(tank(5, errors_pct=(0.31, 0.0, 0.0))).exceeds(0.3)[0] in (True, False)  # near the limit: either
    assert not est.exceeds(np.array([5.0, 5.0, 5.0])).any()


def test_single_nozzle_tank_is_identified_by_the_variation_of_its_sales() -> None:
    est = fit(tank(9, errors_pct=(0.2,), leak=0.38))
    assert abs(est.error_pct[0] - 0.2) < 0.1 and abs(est.leak_l_per_h - 0.38) < 0.15 and est.leak_detected()
    # the same nozzle selling evenly round the clock: only the randomness of the sales separates them
    flat = fit(tank(9, errors_pct=(0.2,), leak=0.38, flat=True))
    assert flat.ci95_pct[0] > est.ci95_pct[0] and flat.leak_ci95 > est.leak_ci95


def test_unidentifiable_parameters_are_nan() -> None:
    # one sale an hour of exactly the same volume: cumulative sales are proportional to time
    t = np.arange(0.0, 24 * 10 + 1)
    sale_h = t[:-1] + 0.5
    gauge = 30000 - 40 * np.arange(t.size) + np.random.default_rng(1).normal(0, 2, t.size)
    est = estimate_tank(reading_h=t, gauge_l=gauge, sale_h=sale_h, sale_nozzle=np.zeros(sale_h.size, dtype=int),
                        sale_l=np.full(sale_h.size, 40.0), n_nozzles=2)
    assert np.isnan(est.leak_l_per_h) and np.isnan(est.error_pct[0])
    assert np.isnan(est.error_pct[1]) and est.sales.tolist() == [240, 0]  # nozzle 1 sold nothing


def test_too_few_readings_gives_nan_not_an_error() -> None:
    est = estimate_tank(reading_h=[0, 1, 2], gauge_l=[100, 99, 98], sale_h=[0.5, 1.5], sale_nozzle=[0, 0],
                        sale_l=[1, 1], n_nozzles=1)
    assert np.isnan(est.error_pct[0]) and np.isnan(est.leak_l_per_h) and not est.leak_detected()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"gauge_l": [1.0, 2.0]}, "same length"),
    ({"gauge_l": [np.nan] * 10}, "finite"),
    ({"sale_nozzle": [0, 5]}, "out of range"),
    ({"sale_nozzle": [0.5, 1.0]}, "integer"),
    ({"sale_l": [-1.0, 1.0]}, "negative"),
    ({"reading_h": [0, 1, 1, 2, 3, 4, 5, 6, 7, 8]}, "same time"),
    ({"n_nozzles": 0}, "at least 1"),
    ({"temp_c": [20.0]}, "one value per reading"),
    ({"sale_h": [1.0]}, "same length"),
    ({"beta_prior": (0.001, 0.0)}, "sd must be positive"),
])
def test_bad_input_is_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"reading_h": np.arange(10.0), "gauge_l": np.full(10, 100.0), "sale_h": [1.5, 2.5],
                               "sale_nozzle": [0, 1], "sale_l": [1.0, 2.0], "n_nozzles": 2}
    with pytest.raises(ValueError, match=message):
        estimate_tank(**{**args, **kwargs})  # type: ignore[arg-type]


def test_fleet_matches_tank_by_tank() -> None:
    a, b = tank(11, errors_pct=(0.1, 0.0)), tank(12, errors_pct=(-0.1, 0.2, 0.0), leak=0.4)
    est = estimate_fleet(
        nozzle_tank=[1, 1, 0, 0, 0],   # fleet nozzles 0–1 on tank 1 (a), 2–4 on tank 0 (b)
        reading_tank=np.r_[np.ones(a.reading_h.size, int), np.zeros(b.reading_h.size, int)],
        reading_h=np.r_[a.reading_h, b.reading_h], gauge_l=np.r_[a.gauge_l, b.gauge_l],
        temp_c=np.r_[a.temp_c, b.temp_c],
        delivery_tank=np.r_[np.ones(a.delivery_h.size, int), np.zeros(b.delivery_h.size, int)],
        delivery_h=np.r_[a.delivery_h, b.delivery_h],
        sale_nozzle=np.r_[a.sale_nozzle, b.sale_nozzle + 2], sale_h=np.r_[a.sale_h, b.sale_h],
        sale_l=np.r_[a.sale_l, b.sale_l])
    assert [e.nozzles.tolist() for e in est] == [[2, 3, 4], [0, 1]]
    np.testing.assert_allclose(est[0].error_pct, fit(b).error_pct)
    np.testing.assert_allclose(est[1].error_pct, fit(a).error_pct)
    assert est[0].leak_detected() and not est[1].leak_detected()
    with pytest.raises(ValueError, match="out of range"):
        estimate_fleet(nozzle_tank=[0], reading_tank=[0], reading_h=[0], gauge_l=[1], sale_nozzle=[3], sale_h=[1],
                       sale_l=[1])
    with pytest.raises(ValueError, match="same length"):
        estimate_fleet(nozzle_tank=[0], reading_tank=[0, 0], reading_h=[0], gauge_l=[1], sale_nozzle=[], sale_h=[],
                       sale_l=[])
