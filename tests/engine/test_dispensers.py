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
         per_day: float = 50.0, flat: bool = False, slow_l: float = 0.0, phi: float = 0.8,
         probe_sd_c: float = 0.0, start_temp_c: float = 22.0, shares: tuple[float, ...] | None = None,
         drift2: tuple[int, float, float] | None = None, start_l: float = 24000.0) -> Tank:
    """A tank with its nozzles' sales (day/night pattern), hourly gauge readings with white noise (and, with
    ``slow_l``, a slowly varying AR(1) error of coefficient ``phi``), deliveries when low with warmer fuel
    cooling back to the ground temperature (22 °C; the fuel starts at ``start_temp_c``), the probe's
    temperature with noise ``probe_sd_c``.  ``drift`` (and ``drift2``) = (nozzle, day, pct); ``shares``
    scales each nozzle's sales."""
    rng = np.random.default_rng(seed)
    n_noz = len(errors_pct)
    p = HOURLY / HOURLY.sum() if not flat else np.full(24, 1 / 24)
    hours = days * 24
    sale_h, sale_n = [], []
    for n in range(n_noz):
        k = rng.poisson(per_day * days * rng.uniform(0.7, 1.3) * (1.0 if shares is None else shares[n]))
        sale_h.append(rng.integers(0, days, k) * 24 + rng.choice(24, k, p=p) + rng.uniform(0.01, 0.99, k))
        sale_n.append(np.full(k, n))
    sh = np.concatenate(sale_h)
    sn = np.concatenate(sale_n)
    order = np.argsort(sh)
    sh, sn = sh[order], sn[order]
    true = rng.uniform(15, 60, sh.size)
    err = np.array(errors_pct)[sn] / 100
    for dr in (drift, drift2):
        if dr is not None:
            err = err + np.where((sn == dr[0]) & (sh >= dr[1] * 24), dr[2] / 100, 0.0)
    shown = np.round(true * (1 + err), 2)
    per_hour = np.bincount(sh.astype(int), weights=true, minlength=hours)
    inv, temp, ground = start_l, start_temp_c, 22.0
    g, temps, deliveries = [], [], []
    settle = False
    slow = rng.normal(0, slow_l)
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
        slow = phi * slow + rng.normal(0, slow_l * np.sqrt(1 - phi**2))
        g.append(inv * (1 + beta * (temp - 20)) + rng.normal(0, noise_l) + slow
                 + (rng.normal(0, 8) if settle else 0.0))
        settle = False
        temps.append(round(temp + rng.normal(0, probe_sd_c), 2))
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
    ({"lags_h": 0.0}, "lags_h must be positive"),
    ({"drift_noise": (4.0, 1.0, 1.0)}, "drift_noise must be"),
    ({"drift_noise": (0.0, 0.0, 0.5)}, "drift_noise must be"),
    ({"drift_noise": (-1.0, 1.0, 0.5)}, "drift_noise must be"),
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


def upto(t: Tank, day: float) -> Tank:
    """The record as a daily job at midnight of ``day`` sees it."""
    h = day * 24.0
    r, d, s = t.reading_h <= h, t.delivery_h <= h, t.sale_h <= h
    return Tank(t.reading_h[r], t.gauge_l[r], t.temp_c[r], t.delivery_h[d], t.sale_h[s], t.sale_nozzle[s], t.sale_l[s])


def noise_cov(t: np.ndarray, white: float, slow: float, phi: float) -> np.ndarray:
    step = np.median(np.diff(t))
    return np.asarray(white * np.eye(t.size) + slow * phi ** (np.abs(t[:, None] - t[None, :]) / step))


def test_whitening_is_exact_for_any_spacing() -> None:
    # readings mostly hourly, with gaps: W Σ Wᵀ = I for white + AR(1) noise, and log|Σ| is right
    t = np.sort(np.random.default_rng(2).choice(np.arange(200.0), 150, replace=False))
    for noise in ((4.0, 1.0, 0.8), (4.0, 0.0, 0.5), (0.5, 3.0, 0.95)):
        w = dispensers._Whitener(t, noise)
        cov = noise_cov(t, *noise)
        m = w(np.eye(t.size))
        np.testing.assert_allclose(m @ cov @ m.T, np.eye(t.size), atol=1e-9)
        assert abs(w.logdet - np.linalg.slogdet(cov)[1]) < 1e-8


def test_change_columns_are_whitened_from_the_running_totals() -> None:
    rng = np.random.default_rng(3)
    t = np.sort(rng.choice(np.arange(300.0), 250, replace=False))
    cum = np.cumsum(rng.uniform(0, 50, (250, 3)), axis=0)
    nozzle, first = np.array([0, 0, 1, 2, 2, 1]), np.array([5, 100, 30, 200, 1, 249])
    before = rng.uniform(0, 1000, 6)
    explicit = np.where(np.arange(250)[:, None] >= first[None, :], cum[:, nozzle] - before[None, :], 0.0)
    for noise in ((4.0, 1.0, 0.8), (1.0, 4.0, 0.95)):
        w = dispensers._Whitener(t, noise)
        fast, slow = w.steps(cum, nozzle, first, before), w(explicit)
        assert np.abs(fast - slow).max() < 1e-12 * np.abs(slow).max()


def test_reml_finds_the_noise_and_the_margin_is_conservative() -> None:
    # 2 L white + 1 L AR(1) (φ = 0.8): long-run variance 4 + 1 × 1.8 / 0.2 = 13 L² per reading
    rng = np.random.default_rng(4)
    n = 3000
    slow = np.zeros(n)
    for i in range(1, n):
        slow[i] = 0.8 * slow[i - 1] + rng.normal(0, 0.6)
    t = np.arange(float(n))
    x = np.column_stack([np.ones(n), t, (t > 1500).astype(float)])  # a level, a trend, a second segment
    y = x @ [100.0, -0.5, 30.0] + rng.normal(0, 2, n) + slow
    best = dispensers._reml_noise(t, x, y, cut=0.0)
    assert 10 < dispensers._long_run(best) < 16, best
    assert 3 < best[0] < 5  # the white part
    assert dispensers._long_run(dispensers._reml_noise(t, x, y, cut=1.0)) >= dispensers._long_run(best)


def test_reml_noise_shape_is_per_hour_whatever_the_reading_interval() -> None:
    # the same gauge read every 15 minutes: white 2 L, slow 1 L whose correlation after one hour is 0.88
    # (0.88^¼ ≈ 0.968 per reading — beyond a per-reading grid that stopped at 0.95)
    rng = np.random.default_rng(6)
    n = 4000
    t = np.arange(n) * 0.25
    phi = 0.88**0.25
    slow = np.zeros(n)
    for i in range(1, n):
        slow[i] = phi * slow[i - 1] + rng.normal(0, np.sqrt(1 - phi**2))
    x = np.column_stack([np.ones(n), t])
    y = x @ [100.0, -0.5] + rng.normal(0, 2, n) + slow
    white, slow_var, phi_est = dispensers._reml_noise(t, x, y, cut=0.0)
    assert 0.95 < phi_est < 0.985, phi_est
    true_lrv = 4.0 + 1.0 * (1 + phi) / (1 - phi)
    assert 0.7 * true_lrv < dispensers._long_run((white, slow_var, phi_est)) < 1.4 * true_lrv


def test_a_known_gauge_noise_replaces_the_estimate_in_the_drift_test() -> None:
    # the small nozzle's drift of the test below, tested against the gauge's true noise (flagged) and
    # against a noise ten times the truth (the same data are then no evidence)
    t = upto(tank(600, errors_pct=(0.05, -0.05, 0.0, 0.1), shares=(1, 1, 1, 0.6), drift=(3, 16, 0.3),
                  slow_l=1.0, probe_sd_c=0.02, leak=0.2), 23)
    known = fit(t, drift_noise=(4.0, 1.0, 0.8))
    assert known.drift_flagged[3] and known.drift_score >= dispensers.DRIFT_Z
    loud = fit(t, drift_noise=(400.0, 100.0, 0.8))
    assert not loud.drift_flagged.any() and loud.drift_score < 0.5 * known.drift_score


def test_temperature_smoothing_keeps_a_quadratic_and_a_delivery_jump() -> None:
    t = np.arange(100.0)
    seg = (t > 50).astype(np.int64)  # a delivery between readings 50 and 51: warm fuel cooling down
    true = 22 + 0.001 * (t - 30) ** 2 + np.where(seg == 1, 3 * np.exp(-(t - 51) / 36), 0.0)
    smooth = dispensers._smooth_temperature(t, true, seg, 6.0)
    assert np.abs(smooth - true)[seg == 0].max() < 1e-9  # a quadratic is kept exactly
    assert np.abs(smooth - true).max() < 2e-3            # the jump is not smeared across the delivery
    noisy = true + np.random.default_rng(5).normal(0, 0.02, t.size)
    assert np.std(dispensers._smooth_temperature(t, noisy, seg, 6.0) - true) < np.std(noisy - true) / 1.6


def test_a_noisy_temperature_probe_does_not_fake_a_drift() -> None:
    # a big single-nozzle tank whose fuel cools by 0.5 °C over the first days, the probe noisy to 0.02 °C:
    # raw, the noise in the thermal regressor pulls β down and the misfit of the first days is taken for a
    # nozzle change; smoothed, neither (β truth 0.0012)
    runs = [tank(500 + seed, errors_pct=(0.0,), leak=0.38, slow_l=1.0, probe_sd_c=0.02, start_temp_c=22.5,
                 start_l=45000.0, per_day=30) for seed in range(10)]
    raw = [fit(t, temp_smooth_h=0.0) for t in runs]
    smoothed = [fit(t) for t in runs]
    assert sum(e.drift_flagged.any() for e in raw) >= 3
    assert not any(e.drift_flagged.any() for e in smoothed)
    assert np.mean([e.beta_per_c for e in raw]) < 0.001 < 0.0011 < np.mean([e.beta_per_c for e in smoothed])


def test_a_drift_on_a_small_nozzle_is_found_within_a_week_with_its_start() -> None:
    # four nozzles, the drifting one selling a sixth of the tank: 0.3 % from day 16, 2 L white + 1 L slow
    # gauge noise, a noisy probe; the daily job flags it among the suspects within 7 days, the change it
    # reports for it starts within a day of the truth and is about 0.3 %
    for seed in range(6):
        t = tank(600 + seed, errors_pct=(0.05, -0.05, 0.0, 0.1), shares=(1, 1, 1, 0.6), drift=(3, 16, 0.3),
                 slow_l=1.0, probe_sd_c=0.02, leak=0.2)
        assert not fit(upto(t, 16)).drift_flagged.any()
        day = next((d for d in range(17, 24) if fit(upto(t, d)).drift_flagged[3]), None)
        assert day is not None, seed
        est = fit(upto(t, 23))
        assert est.drift_flagged[3] and est.drift_score >= dispensers.DRIFT_Z
        assert abs(est.drift_from_h[3] - 16 * 24) <= 24 and abs(est.drift_pct[3] - 0.3) < 0.15, (seed, est)
        assert est.drift_p[3] > 0.1


def test_no_drift_no_flag_in_daily_runs_with_correlated_gauge_noise() -> None:
    flags = 0
    for seed in range(12):
        t = tank(800 + seed, errors_pct=(0.05, -0.05, 0.0, 0.1), shares=(1, 1, 1, 0.6), slow_l=1.0, probe_sd_c=0.02,
                 leak=0.38 * (seed % 2))
        flags += sum(int(fit(upto(t, day)).drift_flagged.sum()) for day in range(8, 31, 2))
    assert flags == 0
