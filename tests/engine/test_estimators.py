"""The fleet estimator against a synthetic fleet whose true errors are known."""

from __future__ import annotations

import numpy as np
import pytest

from jiliang.engine.estimators.chargers import estimate


def fleet(seed: int = 1, n_c: int = 300, n_v: int = 2500, sessions: int = 40000, out_of_class: int = 12,
          noise: float = 0.025) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    true_pct = rng.normal(0, 0.4, n_c)
    bad = rng.choice(n_c, out_of_class, replace=False)
    true_pct[bad] = rng.choice([-1, 1], out_of_class) * rng.uniform(2.5, 4.0, out_of_class)
    v_bias = rng.normal(0, 0.015, n_v)
    # vehicles have home areas: each visits a handful of nearby chargers most of the time
    home = rng.integers(0, n_c, n_v)
    ve = rng.integers(0, n_v, sessions)
    near = (home[ve] + rng.integers(-8, 9, sessions)) % n_c
    anywhere = rng.integers(0, n_c, sessions)
    ch = np.where(rng.random(sessions) < 0.8, near, anywhere)
    y = np.log1p(true_pct[ch] / 100) - v_bias[ve] + rng.normal(0, noise, sessions)
    return ch, ve, y, true_pct, bad


def test_errors_within_half_a_percent_and_verdicts() -> None:
    ch, ve, y, true_pct, bad = fleet()
    rng = np.random.default_rng(9)
    anchored = rng.choice(np.setdiff1d(np.arange(300), bad), 30, replace=False)
    anchors = {int(i): float(true_pct[i] + rng.normal(0, 0.1)) for i in anchored}
    est = estimate(charger=ch, vehicle=ve, log_ratio=y, n_chargers=300, anchors=anchors, anchor_sd_pct=0.1)
    many = est.sessions >= 50
    diff = (est.error_pct - true_pct)[many]
    # With 2.5 % per-session noise a charger with 50 sessions has a standard error near 0.35 %, so a few
    # percent of chargers must fall outside ±0.5 % by chance alone; the estimator must be unbiased and tight.
    assert (np.abs(diff) <= 0.5).mean() >= 0.9, (np.abs(diff) <= 0.5).mean()
    assert np.abs(diff).mean() < 0.25 and abs(diff.mean()) < 0.1
    mpe = np.full(300, 2.0)
    truly_out = np.abs(true_pct) > 2.0
    verdict_right = (np.abs(est.error_pct) > 2.0) == truly_out
    assert verdict_right[many].mean() >= 0.97
    # exceeds_mpe is conservative: it never flags an in-class charger
    assert not (est.exceeds(mpe) & ~truly_out).any()
    assert est.exceeds(mpe)[bad].mean() > 0.8


def test_interval_coverage_is_about_95_percent() -> None:
    ch, ve, y, true_pct, _bad = fleet(seed=4)
    est = estimate(charger=ch, vehicle=ve, log_ratio=y, n_chargers=300,
                   anchors={i: float(true_pct[i]) for i in range(0, 300, 10)}, anchor_sd_pct=0.05)
    covered = np.abs(est.error_pct - true_pct) <= est.ci95_pct
    assert 0.9 <= covered.mean() <= 0.99, covered.mean()


def test_without_anchors_the_fleet_mean_is_zero() -> None:
    ch, ve, y, _true, _bad = fleet(seed=2, out_of_class=0)
    est = estimate(charger=ch, vehicle=ve, log_ratio=y, n_chargers=300)
    assert abs(np.nanmean(np.log1p(est.error_pct / 100))) < 1e-9 and not est.anchored


def test_chargers_without_sessions_are_nan_and_input_is_checked() -> None:
    est = estimate(charger=[0, 0, 1], vehicle=[5, 6, 5], log_ratio=[0.0, 0.01, 0.0], n_chargers=3)
    assert np.isnan(est.error_pct[2]) and est.sessions.tolist() == [2, 1, 0]
    with pytest.raises(ValueError):
        estimate(charger=[0, 3], vehicle=[1, 1], log_ratio=[0.0, 0.0], n_chargers=3)
    with pytest.raises(ValueError):
        estimate(charger=[0], vehicle=[1], log_ratio=[float("inf")], n_chargers=1)
