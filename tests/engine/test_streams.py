"""The stream feed's pure parts: partitions by place, Arrow IPC payloads, id ranges split to a size."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as s

from jiliang.engine import streams
from jiliang.engine.streams import decode_batch, encode_batch, id_parts, partition_of


def test_doctests() -> None:
    assert doctest.testmod(streams).failed == 0


def test_partitions_spread_consecutive_places_and_keep_each_place_whole() -> None:
    places = np.arange(1, 10_001)
    part = partition_of(places, 8)
    counts = np.bincount(part, minlength=8)
    assert counts.min() > 1_000 and counts.max() < 1_500  # about 1,250 each
    # a place's rows always land in one partition, whatever else is in the batch
    again = partition_of(np.concatenate([places[::-1], places]), 8)
    assert np.array_equal(again[:10_000][::-1], part) and np.array_equal(again[10_000:], part)
    assert set(partition_of(np.array([-5, -1, 0, 2**62]), 3).tolist()) <= {0, 1, 2}
    assert partition_of(places, 1).max() == 0
    with pytest.raises(ValueError, match="at least 1"):
        partition_of(places, 0)


def test_payload_round_trip_keeps_values_and_types() -> None:
    rng = np.random.default_rng(4)
    cols = {"id": np.arange(10**12, 10**12 + 500, dtype=np.int64), "device": rng.integers(0, 10**9, 500),
            "ts": rng.uniform(1.7e9, 1.8e9, 500), "register_milli": rng.integers(-10**15, 10**15, 500),
            "ocmf": np.array(["OCMF|{\"ID\":\"电桩-1\"}|{}", "", *(["x" * 40] * 498)], dtype=object)}
    out = decode_batch(encode_batch(cols))
    assert list(out) == list(cols)
    for c, v in cols.items():
        assert out[c].dtype == (object if v.dtype == object else v.dtype)
        assert out[c].tolist() == v.tolist()  # floats bit for bit, strings with their Chinese characters
    empty = decode_batch(encode_batch({c: v[:0] for c, v in cols.items()}))
    assert all(empty[c].size == 0 for c in cols)
    with pytest.raises(ValueError, match="not an Arrow IPC batch"):
        decode_batch(b"not a batch")


@given(s.lists(s.integers(1, 10_000), unique=True, max_size=300), s.integers(1, 50))
def test_id_parts_cover_the_range_without_gap_or_overlap(ids: list[int], max_rows: int) -> None:
    arr = np.array(ids, dtype=np.int64)
    parts = list(id_parts(arr, 0, 10_000, max_rows))
    assert parts[0][0] == 0 and parts[-1][1] == 10_000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))  # consecutive ranges
    seen = np.concatenate([idx for _lo, _hi, idx in parts]) if parts else np.zeros(0, dtype=np.intp)
    assert sorted(seen.tolist()) == list(range(len(ids)))  # every row once
    for lo, hi, idx in parts:
        assert (idx.size <= max_rows and lo < hi) or (not ids and lo == 0 and hi == 10_000)
        assert all(lo < arr[i] <= hi for i in idx.tolist())
