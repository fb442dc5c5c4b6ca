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


def test_every_registered_detector_has_a_runnable_example() -> None:
    from jiliang.engine.detectors import REGISTRY

    missing = [key for key, cls in REGISTRY.items() if ">>> " not in (cls.__doc__ or "")]
    assert missing == []


def _stuck_reference(det: MeterStuckRegister, b: dict[str, np.ndarray], state: dict[str, object]) -> list[object]:
    """The stuck-register rule (表计停走) as a per-device, per-reading Python loop: the vectorised detector
    must find exactly the same."""
    since = dict(state.get("since", {}))  # type: ignore[call-overload]
    moving, first, last, place = {}, {}, {}, {}
    for i, d in enumerate(b["device"].tolist()):
        first.setdefault(d, i)
        last[d] = i
        place.setdefault(d, int(b["place"][i]))
    for d in sorted(first):
        s, e = first[d], last[d] + 1
        r0, t0 = since.get(str(d), (b["register_milli"][s], b["ts"][s]))
        for i in range(s, e):
            if b["register_milli"][i] != r0:
                r0, t0 = b["register_milli"][i], b["ts"][i]
        since[str(d)] = (float(r0), float(t0))
        moving[d] = bool(b["register_milli"][e - 1] > b["register_milli"][s]) or bool(
            b["ts"][e - 1] - t0 < det.params["min_hours"] * 3600)
    out = []
    for d in sorted(first):
        r0, t0 = since[str(d)]
        hours = (b["ts"][last[d]] - t0) / 3600.0
        others = [o for o in first if place[o] == place[d] and o != d]
        if hours < det.params["min_hours"] or not others:
            continue
        share = sum(moving[o] for o in others) / len(others)
        if share >= det.params["neighbour_share"]:
            out.append((d, round(float(hours), 1), r0, len(others), round(share, 3)))
    return out


@pytest.mark.parametrize("seed", range(25))
def test_stuck_register_matches_the_per_reading_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    dev = np.sort(rng.integers(1, 25, n))
    ts, reg = np.zeros(n), np.zeros(n)
    for d in np.unique(dev):
        idx = np.flatnonzero(dev == d)
        ts[idx] = np.cumsum(rng.integers(1, 40, idx.size)) * 3600.0
        reg[idx] = np.cumsum(rng.choice([0, 0, 0, 5, 100], idx.size)) + 1000
    b = {"device": dev, "ts": ts, "seq": np.arange(n), "register_milli": reg, "flags": np.zeros(n), "place": dev % 3}
    state = {"since": {str(d): [1000.0, 0.0] for d in range(1, 25, 3)}} if seed % 2 else {}
    det = MeterStuckRegister(**({"min_hours": 2.0, "neighbour_share": 0.3} if seed % 3 else {}))
    got = [(f.device, f.evidence["hours_unchanged"], f.evidence["register_milli"], f.evidence["neighbours"],
            f.evidence["neighbours_consuming_share"]) for f in det.run(b, state)[0]]
    assert got == _stuck_reference(det, b, state)
    assert seed % 3 == 0 or got, "the planted stuck meters are found"


def _continuity_reference(det: ChargerRegisterContinuity, batch: dict[str, np.ndarray],
                          state: dict[str, object]) -> tuple[list[object], dict[str, object]]:
    """The register-continuity rule (电能读数不连续) as the former per-device loop: the vectorised detector
    must give exactly the same findings and state."""
    from jiliang.engine.detectors.base import Finding, groups

    dev = np.asarray(batch["device"], dtype=np.int64)
    start = np.asarray(batch["meter_start_wh"], dtype=np.float64)
    end = np.asarray(batch["meter_end_wh"], dtype=np.float64)
    energy = np.asarray(batch["energy_wh"], dtype=np.float64)
    tol = det.params["tolerance_wh"]
    last: dict[str, float] = dict(state.get("last_end", {}))  # type: ignore[call-overload]
    prev_end = np.full(dev.size, np.nan)
    if dev.size:
        prev_end[1:] = end[:-1]
    devices, starts, ends = groups(dev)
    for d, s in zip(devices, starts, strict=True):
        prev_end[s] = last.get(str(int(d)), np.nan)
    backwards = np.nan_to_num(prev_end - start, nan=-1.0) > tol
    mismatch = np.abs(energy - (end - start)) > tol
    findings = []
    for d, s, e in zip(devices, starts, ends, strict=True):
        problems = {}
        b_idx = np.flatnonzero(backwards[s:e]) + s
        m_idx = np.flatnonzero(mismatch[s:e]) + s
        if b_idx.size:
            problems["register_backwards"] = [{"seq": int(batch["seq"][i]), "previous_end_wh": float(prev_end[i]),
                                               "start_wh": float(start[i])} for i in b_idx[:10]]
        if m_idx.size:
            problems["energy_mismatch"] = [{"seq": int(batch["seq"][i]), "energy_wh": float(energy[i]),
                                            "end_minus_start_wh": float(end[i] - start[i])} for i in m_idx[:10]]
        if problems:
            findings.append(Finding(int(d), "critical", {"problems": problems}))
        last[str(int(d))] = float(end[e - 1])
    return findings, {**state, "last_end": last}


@pytest.mark.parametrize("seed", range(25))
def test_charger_continuity_matches_the_per_device_loop(seed: int) -> None:
    """Random sessions (some registers going back, some energies off) in two consecutive batches, with and
    without a prior state: same findings, same evidence, same state as the per-device loop."""
    rng = np.random.default_rng(seed)
    det = ChargerRegisterContinuity(**({"tolerance_wh": float(rng.integers(0, 200))} if seed % 2 else {}))
    state: dict[str, object] = {"last_end": {str(d): float(rng.integers(0, 5000)) for d in range(1, 30, 4)}} \
        if seed % 3 else {}
    ref_state = dict(state)
    for part in range(2):
        b = sample("charger.session", n=int(rng.integers(0, 400)), seed=seed * 7 + part)
        if b["device"].size and seed % 4 == 0:
            b["meter_start_wh"] = b["meter_start_wh"] - (rng.random(b["device"].size) < 0.2) * 3000
        got, state = det.run(b, state)
        want, ref_state = _continuity_reference(det, b, ref_state)
        assert got == want
        assert state == ref_state
        assert list(state["last_end"]) == list(ref_state["last_end"])  # type: ignore[call-overload]


@pytest.mark.parametrize("seed", range(25))
def test_nearest_verification_distance_matches_the_per_row_loop(seed: int) -> None:
    """Days to the nearest verification (距最近检定的天数), vectorised, equal the former per-row minimum."""
    from jiliang.engine.detectors.base import nearest_distance

    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(0, 500)), int(rng.integers(0, 60))
    dev = np.sort(rng.integers(1, 30, n))
    x = rng.uniform(20000, 20400, n)
    x[rng.random(n) < 0.1] = 20100.5  # ties with a reference
    ref_dev = rng.integers(1, 30, m)
    ref = np.where(rng.random(m) < 0.2, 20100.5, rng.uniform(20000, 20400, m))
    days: dict[int, list[float]] = {}
    for d, v in zip(ref_dev.tolist(), ref.tolist(), strict=True):
        days.setdefault(d, []).append(v)
    want = np.full(n, np.inf)
    for i, (d, t) in enumerate(zip(dev, x, strict=True)):
        vs = days.get(int(d))
        if vs:
            want[i] = min(abs(t - v) for v in vs)
    got = nearest_distance(dev, x, ref_dev, ref)
    assert np.array_equal(got, want)
