"""Column segments (列式数据段): a batch of telemetry rows as one compact byte string of NumPy columns.

Ingest writes one segment per stored batch beside the rows (ADR 0012); the detector runner reads the
segments instead of asking the database to produce every row again, which on PostgreSQL cost about a
microsecond per row -- more than all the detectors together.

The format is small and fixed: a 4-byte header length, a JSON header naming each column with its dtype,
its offset (the column's minimum) and its byte length, then each column's values less the offset in the
narrowest signed integer type that holds them (little-endian).  Only integer columns (times are whole
microseconds).  Pure NumPy, no Django.

>>> import numpy as np
>>> cols = {"id": np.array([11, 12, 14]), "ts": np.array([1_700_000_000_000_000, 1_700_000_060_000_000,
...         1_700_000_120_000_000]), "flags": np.array([0, 1, 0])}
>>> blob = encode(cols)
>>> out = decode(blob)
>>> [out[c].tolist() == cols[c].tolist() for c in cols], out["id"].dtype.name
([True, True, True], 'int64')
>>> big = {"id": np.arange(10**6, 2 * 10**6), "flags": np.zeros(10**6, dtype=np.int64)}
>>> len(encode(big)) < 5 * 10**6 + 200  # 4 bytes per id (a span of a million), 1 per flag, not 16
True
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

_WIDTHS = (np.int8, np.int16, np.int32, np.int64)


def _narrow(span: int) -> type[np.signedinteger[Any]]:
    for t in _WIDTHS:
        if span <= np.iinfo(t).max:
            return t
    return np.int64


def encode(columns: dict[str, npt.NDArray[Any]]) -> bytes:
    """The columns (integer arrays of one length) as one segment; raises ``ValueError`` on a column that is
    not integer or of another length."""
    n: int | None = None
    head: list[list[Any]] = []
    parts: list[bytes] = []
    for name, values in columns.items():
        v = np.asarray(values)
        if v.dtype.kind not in "iu":
            raise ValueError(f"segment column {name!r} is not integer ({v.dtype})")
        if v.ndim != 1 or (n is not None and v.size != n):
            raise ValueError(f"segment column {name!r} has {v.size} values, not {n}")
        n = int(v.size)
        v = v.astype(np.int64, copy=False)
        low = int(v.min()) if n else 0
        width = _narrow(int(v.max()) - low if n else 0)
        raw = (v - low).astype(np.dtype(width).newbyteorder("<"), copy=False).tobytes()
        head.append([name, np.dtype(width).name, low, len(raw)])
        parts.append(raw)
    header = json.dumps({"rows": n or 0, "columns": head}, separators=(",", ":")).encode()
    return len(header).to_bytes(4, "little") + header + b"".join(parts)


def decode(blob: bytes | memoryview) -> dict[str, npt.NDArray[np.int64]]:
    """The columns of a segment, each as int64."""
    buf = memoryview(blob)
    size = int.from_bytes(buf[:4], "little")
    header = json.loads(bytes(buf[4:4 + size]))
    pos = 4 + size
    rows = int(header["rows"])
    out: dict[str, npt.NDArray[np.int64]] = {}
    for name, dtype, low, length in header["columns"]:
        v = np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<"), count=rows, offset=pos)
        pos += int(length)
        col = v.astype(np.int64)
        if low:
            col += int(low)
        out[name] = col
    return out


def _header(buf: memoryview) -> tuple[int, list[tuple[str, np.dtype[Any], int, int]]]:
    size = int.from_bytes(buf[:4], "little")
    header = json.loads(bytes(buf[4:4 + size]))
    pos = 4 + size
    cols = []
    for name, dtype, low, length in header["columns"]:
        cols.append((name, np.dtype(dtype).newbyteorder("<"), int(low), pos))
        pos += int(length)
    return int(header["rows"]), cols


def decode_range(blobs: list[bytes | memoryview], after: int, upto: int, key: str = "id"
                 ) -> dict[str, npt.NDArray[np.int64]]:
    """The rows of several segments (each ascending in ``key``) whose ``key`` is in (``after``, ``upto``],
    concatenated in the segments' order, each column as int64 -- written once into arrays of the final
    size (decoding each segment and concatenating allocated and touched every value twice more).

    >>> import numpy as np
    >>> a, b = encode({"id": np.array([1, 2, 3]), "v": np.array([5, 6, 7])}), encode({"id": np.array([4, 9]),
    ...                                                                              "v": np.array([8, 9])})
    >>> {k: v.tolist() for k, v in decode_range([a, b], 1, 4).items()}
    {'id': [2, 3, 4], 'v': [6, 7, 8]}
    """
    plan = []
    total = 0
    names: list[str] | None = None
    for blob in blobs:
        buf = memoryview(blob)
        n, cols = _header(buf)
        by = {name: (dtype, low, pos) for name, dtype, low, pos in cols}
        if names is None:
            names = [c[0] for c in cols]
        dtype, low, pos = by[key]
        ids = np.frombuffer(buf, dtype=dtype, count=n, offset=pos)
        # the range in the segment's own (narrow) values: ids less its minimum
        top = int(np.iinfo(dtype).max)
        a = int(np.searchsorted(ids, dtype.type(min(max(after - low, -1), top)), side="right"))
        b = int(np.searchsorted(ids, dtype.type(min(max(upto - low, -1), top)), side="right"))
        if b > a:
            plan.append((buf, by, a, b))
            total += b - a
    out = {name: np.empty(total, dtype=np.int64) for name in names or []}
    at = 0
    for buf, by, a, b in plan:
        for name, col in out.items():
            dtype, low, pos = by[name]
            dst = col[at:at + b - a]
            dst[:] = np.frombuffer(buf, dtype=dtype, count=b - a, offset=pos + a * dtype.itemsize)
            if low:
                dst += low
        at += b - a
    return out


def rows(blob: bytes | memoryview) -> int:
    """How many rows a segment holds, from its header alone."""
    buf = memoryview(blob)
    size = int.from_bytes(buf[:4], "little")
    return int(json.loads(bytes(buf[4:4 + size]))["rows"])
