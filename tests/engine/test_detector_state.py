"""Per-device detector state as columns (jiliang.engine.detectors.state)."""

from __future__ import annotations

import doctest
import json

import numpy as np

from jiliang.engine.detectors import state as state_mod
from jiliang.engine.detectors.state import DeviceTable


def test_doctests() -> None:
    assert doctest.testmod(state_mod).failed == 0


def test_merge_then_dump_round_trips_through_json_with_missing_values() -> None:
    rng = np.random.default_rng(3)
    old_dev = np.unique(rng.integers(0, 1000, 300))
    t = DeviceTable(old_dev, {"ts": rng.random(old_dev.size), "reg": rng.random(old_dev.size)})
    new_dev = np.unique(rng.integers(500, 1500, 200))
    new = {"ts": rng.random(new_dev.size), "reg": np.where(rng.random(new_dev.size) < 0.1, np.nan, 1.0)}
    merged = t.merge(new_dev, new)
    back = DeviceTable.load(json.loads(json.dumps(merged.dump())), ("ts", "reg"))
    assert np.array_equal(back.devices, np.union1d(old_dev, new_dev))
    # a device in the batch takes the batch's values; the others keep theirs
    assert np.array_equal(back.get(new_dev, "ts", -1), new["ts"])
    assert np.array_equal(back.get(new_dev, "reg", -1), new["reg"], equal_nan=True)
    kept = np.setdiff1d(old_dev, new_dev)
    assert np.array_equal(back.get(kept, "ts", -1), t.get(kept, "ts", -1))
    assert back.get(np.array([10**6]), "ts", -1).tolist() == [-1.0]
    assert back.has(np.array([kept[0], 10**6])).tolist() == [True, False]


def test_old_keyed_state_is_read_by_position() -> None:
    t = DeviceTable.load({"12": [100.0, 5.5], "3": [50.0, 1.0]}, ("ts", "reg"))
    assert t.devices.tolist() == [3, 12] and t.fields["reg"].tolist() == [1.0, 5.5]
    assert DeviceTable.load({}, ("ts",)).devices.size == 0 and DeviceTable.load(None, ("ts",)).devices.size == 0
