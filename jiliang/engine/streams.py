"""Telemetry batches on a partitioned stream (分区消息流, ADR 0003): pure helpers of the NATS JetStream feed.

The stream carries the stored records of one kind as *messages*: each covers an id range (``low``, ``top``]
of the kind's table and holds every record of that range whose place falls in the message's partition.
A partition's messages cover consecutive ranges (the publisher sends one for every partition and range,
empty ones included), so a consumer can tell a message that arrives too early (its ``low`` above what the
partition's detectors have read) from a repeat (its ``top`` at or below it).

Records are partitioned by **place** (the market, the station, the residential compound), not by device:
a detector that compares a device with its neighbours (a stuck meter while the compound's other meters
consume) then sees the whole place in one partition.  Payloads are Arrow IPC (the columns as they are,
LZ4-compressed), written and read with polars.  No Django.

>>> import numpy as np
>>> cols = {"id": np.array([5, 6, 7]), "device": np.array([3, 3, 4]), "ts": np.array([1.5, 2.5, 0.25]),
...         "ocmf": np.array(["a", "", "c"], dtype=object)}
>>> out = decode_batch(encode_batch(cols))
>>> [out[c].tolist() == cols[c].tolist() for c in cols], out["ts"].dtype.name, out["ocmf"].dtype.name
([True, True, True, True], 'float64', 'object')
>>> partition_of(np.array([1, 1, 2, -7]), 4).tolist() == partition_of(np.array([1, 1, 2, -7]), 4).tolist()
True
>>> [(lo, hi, idx.tolist()) for lo, hi, idx in id_parts(np.array([11, 12, 15, 19]), 10, 20, 2)]
[(10, 12, [0, 1]), (12, 20, [2, 3])]
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: consecutive place ids spread over the partitions


def partition_of(place: npt.ArrayLike, partitions: int) -> npt.NDArray[np.int64]:
    """The partition (0 … ``partitions`` − 1) of each place id (a negative id -- a device without a place
    -- hashes like any other).  Stable across processes and machines: the same place always lands in the
    same partition for the same count."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    p = np.asarray(place, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        mixed = (p * _GOLDEN) >> np.uint64(32)
    out: npt.NDArray[np.int64] = (mixed % np.uint64(partitions)).astype(np.int64)
    return out


def encode_batch(cols: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The columns as one Arrow IPC payload (LZ4).  Integer, float and string (object) columns."""
    import polars as pl

    frame = pl.DataFrame({name: (pl.Series(name, v.tolist(), dtype=pl.String) if v.dtype == object else v)
                          for name, v in cols.items()})
    buf = io.BytesIO()
    frame.write_ipc(buf, compression="lz4")
    return buf.getvalue()


def decode_batch(payload: bytes) -> dict[str, npt.NDArray[Any]]:
    """The columns of an :func:`encode_batch` payload: integers as int64, floats as float64, strings as
    object arrays.  Raises ``ValueError`` on a payload that is not one."""
    import polars as pl

    try:
        frame = pl.read_ipc(io.BytesIO(payload))
    except Exception as exc:  # polars raises its own error types for a corrupt payload
        raise ValueError(f"not an Arrow IPC batch: {exc}") from exc
    out: dict[str, npt.NDArray[Any]] = {}
    for name in frame.columns:
        col = frame[name]
        if col.dtype == pl.String:
            out[name] = np.array(col.fill_null("").to_list(), dtype=object)
        elif col.dtype.is_float():
            out[name] = col.to_numpy().astype(np.float64, copy=False)
        elif col.dtype.is_integer():
            out[name] = col.to_numpy().astype(np.int64, copy=False)
        else:
            raise ValueError(f"column {name}: unsupported type {col.dtype}")
    return out


def id_parts(ids: npt.NDArray[np.int64], low: int, top: int, max_rows: int
             ) -> Iterator[tuple[int, int, npt.NDArray[np.intp]]]:
    """Split the rows with ids ``ids`` (all in (``low``, ``top``]) into consecutive id ranges of at most
    ``max_rows`` rows: (range low, range top, row indices), the ranges covering (``low``, ``top``] without
    gap or overlap.  No rows: one empty range."""
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    order = np.argsort(ids, kind="stable")
    n = int(ids.size)
    if not n:
        yield low, top, order
        return
    lo = low
    for start in range(0, n, max_rows):
        idx = order[start:start + max_rows]
        hi = top if start + max_rows >= n else int(ids[idx[-1]])
        yield lo, hi, idx
        lo = hi
