"""Column segments (ADR 0012): what goes in comes out, in the narrowest width, and bad columns are refused."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from jiliang.engine import segments
from jiliang.engine.segments import decode, encode, rows


def test_doctests() -> None:
    result = doctest.testmod(segments)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize("span", [0, 100, 30_000, 2**31 + 5, 2**62])
def test_round_trip_keeps_every_value_and_dtype(span: int) -> None:
    rng = np.random.default_rng(span % 1000)
    n = 1000
    low = -(2**62) if span == 2**62 else -7
    cols = {"id": np.arange(10**12, 10**12 + n, dtype=np.int64),
            "v": low + rng.integers(0, span + 1, n, dtype=np.int64),
            "flags": rng.integers(0, 2, n).astype(np.int8)}
    out = decode(encode(cols))
    assert list(out) == list(cols)
    for c in cols:
        assert out[c].dtype == np.int64
        assert np.array_equal(out[c], cols[c].astype(np.int64))
    assert rows(encode(cols)) == n


def test_values_are_stored_in_the_narrowest_width() -> None:
    n = 10_000
    small = encode({"id": np.arange(n) + 5_000_000_000})  # a span of 9,999 fits two bytes
    wide = encode({"id": np.arange(n) * 10**9})
    assert len(small) < 2 * n + 200
    assert len(wide) > 8 * n


def test_an_empty_segment_decodes_to_empty_columns() -> None:
    out = decode(encode({"id": np.array([], dtype=np.int64), "ts": np.array([], dtype=np.int64)}))
    assert [v.size for v in out.values()] == [0, 0]


def test_non_integer_or_ragged_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="'ts' is not integer"):
        encode({"id": np.arange(3), "ts": np.array([1.5, 2.5, 3.5])})
    with pytest.raises(ValueError, match="'v' has 2 values, not 3"):
        encode({"id": np.arange(3), "v": np.arange(2)})


def test_decode_range_equals_filtering_every_segment() -> None:
    from jiliang.engine.segments import decode_range

    rng = np.random.default_rng(3)
    blobs, ids, vals = [], [], []
    start = 1000
    for n in (1, 5, 300, 70_000, 2):  # id spans of one to several bytes
        gap = rng.integers(1, 3 if n < 1000 else 40, n)
        i = start + np.cumsum(gap)
        v = rng.integers(-(2**40), 2**40, n)
        blobs.append(encode({"id": i, "v": v}))
        ids.append(i)
        vals.append(v)
        start = int(i[-1])
    all_ids, all_vals = np.concatenate(ids), np.concatenate(vals)
    lo_hi = [(0, 10), (0, 10**12), (-(10**9), 1005), (int(all_ids[3]), int(all_ids[-3])), (int(all_ids[400]),
             int(all_ids[400])), (int(all_ids[-1]), 10**18), (int(all_ids[310]) - 1, int(all_ids[9000]))]
    for lo, hi in lo_hi:
        got = decode_range(blobs, lo, hi)
        keep = (all_ids > lo) & (all_ids <= hi)
        assert got["id"].tolist() == all_ids[keep].tolist()
        assert got["v"].tolist() == all_vals[keep].tolist()
    assert decode_range([], 0, 10) == {}
