"""Contract checks run against every registered detector, then behaviour across batches."""

from __future__ import annotations

import copy
import doctest

import numpy as np
import pytest

import jiliang.engine.detectors.chargers as chargers_mod
import jiliang.engine.detectors.meters as meters_mod
import jiliang.engine.detectors.scales as scales_mod
from jiliang.engine.detectors import REGISTRY, DetectorParamsError
from jiliang.engine.detectors.chargers import ChargerRegisterContinuity
from jiliang.engine.detectors.meters import MeterReverseFlow, MeterStuckRegister

H = 3600.0


def sample(kind: str, n: int = 300, seed: int = 3) -> dict[str, np.ndarray]:
    """A random batch of ``kind`` with every column any detector of that kind reads, sorted by device."""
    rng = np.random.default_rng(seed)
    dev = np.sort(rng.integers(1, 20, n))
    ts = np.zeros(n)
    for d in np.unique(dev):
        m = dev == d
        ts[m] = np.cumsum(rng.uniform(0.5, 3, m.sum())) * H
    b: dict[str, np.ndarray] = {"device": dev, "seq": np.arange(n), "ts": ts}
    if kind == "scale.txn":
        b["net_g"] = rng.integers(50, 5000, n)
        b["unit_price_fen_per_kg"] = rng.integers(200, 8000, n)
        b["amount_fen"] = np.rint(b["net_g"] * b["unit_price_fen_per_kg"] / 1000).astype(np.int64) + (
            rng.random(n) < 0.05) * 30
        b["tare_g"] = np.zeros(n, dtype=np.int64)
    elif kind == "scale.event":
        b["event"] = rng.choice(np.array(["zero", "calibration", "seal_open", "software"], dtype=object), n)
        b["sw_id"] = np.array(["V1"] * n, dtype=object)
        b["sw_hash"] = rng.choice(np.array(["aa", "bb", ""], dtype=object), n)
        b["filed_sw_hash"] = np.array(["aa"] * n, dtype=object)
        b["days_from_verification"] = rng.choice([0.1, 5.0, np.inf], n)
    elif kind == "scale.recheck":
        b["actual_g"] = rng.integers(50, 3000, n)
        b["claimed_g"] = (b["actual_g"] * np.where(rng.random(n) < 0.1, 1.08, 1.0)).astype(np.int64)
    elif kind == "meter.reading":
        steps = rng.integers(-5, 200, n)
        b["register_milli"] = np.zeros(n, dtype=np.int64)
        for d in np.unique(dev):
            m = dev == d
            b["register_milli"][m] = 1000 + np.cumsum(steps[m])
        b["flags"] = (rng.random(n) < 0.02).astype(np.int64)
        b["place"] = dev % 3
        b["max_rate_milli_per_h"] = np.full(n, 150.0)
    elif kind == "charger.session":
        energy = rng.integers(1000, 60000, n)
        start = np.zeros(n)
        for d in np.unique(dev):
            m = dev == d
            start[m] = np.concatenate(([0], np.cumsum(energy[m])[:-1]))
        b["meter_start_wh"] = start.astype(np.int64) - (rng.random(n) < 0.03) * 500
        b["meter_end_wh"] = b["meter_start_wh"] + energy
        b["energy_wh"] = energy + (rng.random(n) < 0.03) * 100
        b["ocmf"] = np.array([""] * n, dtype=object)
        b["public_key"] = np.array([""] * n, dtype=object)
    return b


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_does_not_mutate_its_input_and_is_deterministic(key: str) -> None:
    cls = REGISTRY[key]
    batch = sample(cls.kind)
    before = copy.deepcopy(batch)
    first, state1 = cls().run(batch, {})
    for k in before:
        assert np.array_equal(before[k], batch[k]), f"{key} changed column {k}"
    second, state2 = cls().run(batch, {})
    assert first == second and state1 == state2
    assert all(f.severity in ("info", "warning", "critical") for f in first)


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_parameters_are_validated_and_described(key: str) -> None:
    cls = REGISTRY[key]
    schema = cls.params_schema()
    assert schema["type"] == "object" and set(schema["properties"]) == set(cls.defaults)
    with pytest.raises(DetectorParamsError):
        cls(not_a_parameter=1.0)
    for name, (lo, _hi) in cls.bounds.items():
        with pytest.raises(DetectorParamsError):
            cls(**{name: lo - 1})
        with pytest.raises(DetectorParamsError):
            cls(**{name: float("nan")})


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_empty_batch(key: str) -> None:
    cls = REGISTRY[key]
    batch = {k: v[:0] for k, v in sample(cls.kind).items()}
    findings, _ = cls().run(batch, {})
    assert findings == []


def test_detectors_beat_chance_on_planted_faults() -> None:
    """Faults planted in the samples are found, and only on the devices that have them."""
    b = sample("scale.txn")
    planted = set(np.unique(b["device"][np.abs(b["amount_fen"] - np.rint(b["net_g"] * b["unit_price_fen_per_kg"]
                                                                           / 1000)) > 1]).tolist())
    found = {f.device for f in REGISTRY["scale.amount_mismatch"]().run(b, {})[0]}
    assert found == planted and planted


def test_reverse_flow_is_seen_across_batches() -> None:
    d = MeterReverseFlow()
    one = {"device": np.array([7]), "seq": np.array([1]), "ts": np.array([0.0]), "register_milli": np.array([5000]),
           "flags": np.array([0])}
    two = {"device": np.array([7]), "seq": np.array([2]), "ts": np.array([H]), "register_milli": np.array([4000]),
           "flags": np.array([0])}
    f1, state = d.run(one, {})
    f2, _ = d.run(two, state)
    assert f1 == [] and [f.device for f in f2] == [7]


def test_stuck_register_needs_neighbours_that_consume() -> None:
    d = MeterStuckRegister()
    ts = np.array([0, 30 * H, 60 * H] * 2)
    alone = {"device": np.array([1, 1, 1, 2, 2, 2]), "place": np.array([9, 9, 9, 8, 8, 8]), "seq": np.arange(6),
             "ts": ts, "register_milli": np.array([5, 5, 5, 10, 90, 170]), "flags": np.zeros(6)}
    assert d.run(alone, {})[0] == []  # no neighbour at its place
    idle = dict(alone, place=np.full(6, 9), register_milli=np.array([5, 5, 5, 10, 10, 10]))
    assert d.run(idle, {})[0] == []   # the neighbour is idle too: a vacant block, not a stuck meter


def test_charger_continuity_across_batches() -> None:
    d = ChargerRegisterContinuity()
    a = {"device": np.array([3]), "seq": np.array([1]), "meter_start_wh": np.array([0]),
         "meter_end_wh": np.array([1000]), "energy_wh": np.array([1000])}
    b = {"device": np.array([3]), "seq": np.array([2]), "meter_start_wh": np.array([800]),
         "meter_end_wh": np.array([1500]), "energy_wh": np.array([700])}
    _, state = d.run(a, {})
    findings, _ = d.run(b, state)
    assert list(findings[0].evidence["problems"]) == ["register_backwards"]


@pytest.mark.parametrize("module", [scales_mod, meters_mod, chargers_mod])
def test_docstring_examples(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]
