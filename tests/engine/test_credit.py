from __future__ import annotations

import numpy as np
import pytest

from jiliang.engine.credit import CreditConfig, CreditConfigError, explain, grades, scores


def test_an_event_halves_at_its_half_life() -> None:
    cfg = CreditConfig(events={"x": (-20.0, 100.0)}, base=80.0)
    s = scores(cfg, n_entities=3, entity=[0, 1, 2], event=["x", "x", "x"], age_days=[0.0, 100.0, 200.0])
    assert s.tolist() == pytest.approx([60.0, 70.0, 75.0])


def test_no_events_is_the_base_and_scores_are_clamped() -> None:
    cfg = CreditConfig(events={"bad": (-100.0, 10.0), "good": (100.0, 10.0)})
    s = scores(cfg, n_entities=3, entity=[0, 1], event=["bad", "good"], age_days=[0, 0])
    assert s.tolist() == [0.0, 100.0, 80.0]


def test_grade_thresholds_are_inclusive() -> None:
    cfg = CreditConfig()
    assert grades(cfg, [90.0, 89.99, 75.0, 60.0, 59.99]) == ["A", "B", "B", "C", "D"]


@pytest.mark.parametrize("kwargs", [
    {"events": {"x": (1.0, 0.0)}}, {"events": {"x": (float("nan"), 10.0)}}, {"base": 120.0},
    {"thresholds": (60.0, 75.0, 90.0)}, {"events": {}},
])
def test_invalid_configuration_is_refused(kwargs: dict) -> None:
    with pytest.raises(CreditConfigError):
        CreditConfig(**kwargs)


def test_unknown_event_and_future_event() -> None:
    cfg = CreditConfig()
    with pytest.raises(CreditConfigError, match="unknown event"):
        scores(cfg, n_entities=1, entity=[0], event=["bribery"], age_days=[0])
    with pytest.raises(CreditConfigError, match="future"):
        scores(cfg, n_entities=1, entity=[0], event=["alert_confirmed"], age_days=[-1])


def test_vectorised_equals_per_entity_loop() -> None:
    cfg = CreditConfig()
    rng = np.random.default_rng(1)
    n, m = 500, 5000
    ent = rng.integers(0, n, m)
    codes = rng.integers(0, len(cfg.event_names), m)
    age = rng.uniform(0, 1000, m)
    fast = scores(cfg, n_entities=n, entity=ent, event=codes, age_days=age)
    for i in range(0, n, 37):
        total = cfg.base
        for e, c, a in zip(ent, codes, age, strict=True):
            if e == i:
                w, hl = cfg.events[cfg.event_names[c]]
                total += w * 0.5 ** (a / hl)
        assert fast[i] == pytest.approx(min(100.0, max(0.0, total)))


def test_explanation_lists_every_event_by_effect() -> None:
    rows = explain(CreditConfig(), [("commitment_signed", 10.0), ("alert_confirmed", 30.0)])
    assert [r["event"] for r in rows] == ["alert_confirmed", "commitment_signed"]
    assert rows[0]["contribution"] < 0 < rows[1]["contribution"]
