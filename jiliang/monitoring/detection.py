"""Running the detectors over stored telemetry and keeping alerts (``jiliang detect``).

Each detector reads its telemetry table past its high-water mark in chunks, gets the rows as NumPy
columns sorted by device and time (plus registry columns it needs) -- from the column segments ingest wrote
beside the rows where they cover the chunk (ADR 0012), else from the rows -- and runs; its findings open or update
alerts (one open alert per device and detector), and its cursor and state advance in the same
transaction, so a crash never skips or double-counts a chunk.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from django.db import transaction
from django.utils import timezone

from jiliang.core import bulk
from jiliang.core.changelog import log_change
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.engine.detectors import REGISTRY, Detector, Finding
from jiliang.engine.detectors.base import groups, nearest_distance
from jiliang.monitoring.models import (
    Alert,
    ChargerSession,
    DetectorConfig,
    DetectorCursor,
    MeterReading,
    ScaleEvent,
    ScaleRecheck,
    ScaleTxn,
    SegmentMark,
    TelemetrySegment,
)
from jiliang.registry.models import Instrument
from jiliang.verification.models import Verification

SOURCES: dict[str, tuple[Any, tuple[str, ...], str]] = {
    # kind: (model, columns, time column used for ordering)
    # (tare_g is stored but no detector reads it: not fetched)
    "scale.txn": (ScaleTxn, ("id", "device_id", "ts", "seq", "net_g", "unit_price_fen_per_kg", "amount_fen"), "ts"),
    "scale.event": (ScaleEvent, ("id", "device_id", "ts", "seq", "event", "sw_id", "sw_hash"), "ts"),
    "scale.recheck": (ScaleRecheck, ("id", "device_id", "ts", "claimed_g", "actual_g"), "ts"),
    "meter.reading": (MeterReading, ("id", "device_id", "ts", "seq", "register_milli", "flags"), "ts"),
    "charger.session": (ChargerSession, ("id", "device_id", "start_ts", "seq", "meter_start_wh", "meter_end_wh",
                                         "energy_wh", "ocmf"), "start_ts"),
}
CHUNK = 2_000_000


def _segment_columns() -> dict[str, tuple[str, ...]]:
    from jiliang.monitoring.ingest import SEGMENT_COLUMNS

    assert all(SOURCES[k][1] == cols for k, cols in SEGMENT_COLUMNS.items())
    return SEGMENT_COLUMNS
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class DetectorReport:
    key: str
    rows: int = 0
    findings: int = 0
    opened: int = 0
    updated: int = 0


@dataclass
class RunReport:
    detectors: list[DetectorReport] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.detectors)


def _epoch(values: list[Any]) -> npt.NDArray[np.float64]:
    return np.array([v.timestamp() for v in values], dtype=np.float64)


def sort_order(device: npt.NDArray[np.int64], ts: npt.NDArray[np.float64]) -> npt.NDArray[np.intp] | None:
    """The stable order of rows by device, then time (None when they are in that order already).  Device and
    time (whole microseconds from the chunk's first) are packed into one 64-bit key when they fit -- one
    stable sort instead of ``lexsort``'s two passes; otherwise ``lexsort``.  Ties keep their input order."""
    if device.size < 2:
        return None
    d0 = int(device.min())
    t0 = float(ts.min())
    t_us = np.rint((ts - t0) * 1e6).astype(np.int64)
    t_bits = max(1, int(t_us.max()).bit_length())
    if (int(device.max()) - d0).bit_length() + t_bits <= 62:
        key = ((device - d0) << t_bits) | t_us
        if (key[1:] >= key[:-1]).all():
            return None
        return np.argsort(key, kind="stable")
    dd = np.diff(device)
    if ((dd > 0) | ((dd == 0) & (np.diff(ts) >= 0))).all():
        return None
    return np.lexsort((ts, device))


def _sort(kind: str, out: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    order = sort_order(out["device"], out["ts"])
    return out if order is None else {k: v[order] for k, v in out.items()}


def _columns(kind: str, rows: list[tuple[Any, ...]]) -> dict[str, npt.NDArray[Any]]:
    _model, cols, tcol = SOURCES[kind]
    out: dict[str, npt.NDArray[Any]] = {}
    for j, c in enumerate(cols):
        values = [r[j] for r in rows]
        name = "device" if c == "device_id" else ("ts" if c == tcol else c)
        if isinstance(values[0], dt.datetime):
            out[name] = _epoch(values)
        elif isinstance(values[0], str):
            out[name] = np.array(values, dtype=object)
        else:
            out[name] = np.array(values, dtype=np.int64)
    return _sort(kind, out)


# --- reading a chunk of rows straight into NumPy columns -------------------------------------------------

_PG_FIXED = {"bigint": ">i8", "integer": ">i4", "smallint": ">i2", "timestamp with time zone": ">i8"}
_PG_ARRAY_OIDS = (1016, 1007, 1005, 1185)  # int8[], int4[], int2[], timestamptz[]
PG_EPOCH_S = 946_684_800.0


def _read_chunk(kind: str, after: int, upto: int) -> dict[str, npt.NDArray[Any]] | None:
    """The rows of the kind's table with ``after`` < id ≤ ``upto``, as columns sorted by device and
    time (times in seconds since the epoch), or None when there are none.  No ORM objects: PostgreSQL sends
    each fixed-width column as one binary array (``bulk.pg_array``); SQLite sends integer and time columns as one
    byte string per part (``_sqlite_fixed``), other columns as rows from a raw cursor."""
    from django.db import connection

    model, cols, tcol = SOURCES[kind]
    table = model._meta.db_table
    names = ", ".join(f'"{c}"' for c in cols)
    sql = f'SELECT {names} FROM "{table}" WHERE "id" > %s AND "id" <= %s ORDER BY "id"'  # noqa: S608
    by_column = {f.column: f for f in model._meta.concrete_fields}
    types = [str(by_column[c].db_type(connection)) for c in cols]
    out: dict[str, npt.NDArray[Any]] = {}
    rename = {c: "device" if c == "device_id" else ("ts" if c == tcol else c) for c in cols}
    if connection.vendor == "postgresql" and all(t in _PG_FIXED for t in types):
        # one row holding one binary array per column: the server aggregates, the client parses each
        # array with one np.frombuffer (a binary COPY would hand Python one message per row)
        # (no ORDER BY inside the aggregates: each would sort the chunk again; the rows arrive in id order
        # from the subquery, which is checked below)
        aggs = ", ".join(f'array_agg("{c}")' for c in cols)
        import psycopg

        connection.ensure_connection()
        # Django's cursors bind parameters client-side, which cannot ask for binary results
        with psycopg.Cursor(connection.connection) as raw:
            for oid in _PG_ARRAY_OIDS:
                raw.adapters.register_loader(oid, bulk.raw_array_loader())
            raw.execute(f'SELECT count(*), {aggs} FROM ({sql}) AS chunk', [after, upto], binary=True)  # noqa: S608
            count, *arrays = raw.fetchone() or (0,)
        if not count:
            return None
        for c, t, blob in zip(cols, types, arrays, strict=True):
            v = bulk.pg_array(blob, int(count), _PG_FIXED[t])
            out[rename[c]] = v.astype(np.float64) / 1e6 + PG_EPOCH_S if t.startswith("timestamp") else v.astype(
                np.int64)
        return _sort(kind, _in_id_order(out))
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(sql, [after, upto])
            rows = cur.fetchall()
        return _columns(kind, rows) if rows else None
    if all(t in _PG_FIXED or t == "datetime" for t in types):
        return _sqlite_fixed(kind, table, cols, types, after, upto)
    # SQLite, rows with text: times (naive UTC text) become whole microseconds in SQL
    exprs = [f'CAST(strftime(\'%%s\', "{c}") AS INTEGER) * 1000000 + CASE WHEN length("{c}") > 19 THEN '
             f'CAST(substr("{c}" || \'000000\', 21, 6) AS INTEGER) ELSE 0 END' if t == "datetime" else f'"{c}"'
             for c, t in zip(cols, types, strict=True)]
    with connection.cursor() as cur:
        cur.execute(f'SELECT {", ".join(exprs)} FROM "{table}" WHERE "id" > %s AND "id" <= %s '  # noqa: S608
                    'ORDER BY "id"', [after, upto])
        rows = cur.fetchall()
    if not rows:
        return None
    for c, t, values in zip(cols, types, zip(*rows, strict=True), strict=True):
        if t == "datetime":
            out[rename[c]] = np.array(values, dtype=np.int64) / 1e6
        elif isinstance(values[0], str):
            out[rename[c]] = np.array(values, dtype=object)
        else:
            out[rename[c]] = np.array(values, dtype=np.int64)
    return _sort(kind, out)


SQLITE_PART = 250_000
_HEX = np.zeros(256, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)
_DIGITS = {"y": (0, 4), "mo": (5, 2), "d": (8, 2), "h": (11, 2), "mi": (14, 2), "s": (17, 2), "us": (20, 6)}


def _sqlite_fixed(kind: str, table: str, cols: tuple[str, ...], types: list[str], after: int, upto: int
                  ) -> dict[str, npt.NDArray[Any]] | None:
    """SQLite, integer and time columns only: each part of the chunk comes back as ONE byte string -- every
    integer as 16 hexadecimal digits (two's complement), every time as its 26-character text -- decoded
    column-wise with NumPy.  Fetching tuples made Python build one object per value (~60 % of a run)."""
    from django.db import connection

    from jiliang.engine.telemetry import days_from_civil

    ints = [c for c, t in zip(cols, types, strict=True) if t != "datetime"]
    times = [c for c, t in zip(cols, types, strict=True) if t == "datetime"]
    fmt = "%%016x" * len(ints) + "%%s" * len(times)  # '%%' is one '%' once Django converts the placeholders
    args = ", ".join([f'"{c}"' for c in ints] + [f"substr(\"{c}\" || '.000000', 1, 26)" for c in times])
    width = 16 * len(ints) + 26 * len(times)
    parts: list[bytes] = []
    total, last = 0, after
    with connection.cursor() as cur:
        while True:
            part = SQLITE_PART
            cur.execute(f"SELECT CAST(group_concat(r, '') AS BLOB), count(*), max(id) FROM (SELECT printf('{fmt}', "  # noqa: S608
                        f"{args}) AS r, "
                        f'"id" FROM "{table}" WHERE "id" > %s AND "id" <= %s ORDER BY "id" LIMIT %s)',
                        [last, upto, part])
            text, n, top = cur.fetchone()
            if not n:
                break
            parts.append(text)
            total, last = total + n, top
            if n < part:
                break
    if not total:
        return None
    raw = np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(total, width)
    out: dict[str, npt.NDArray[Any]] = {}
    rename = {c: "device" if c == "device_id" else ("ts" if c == SOURCES[kind][2] else c) for c in cols}
    if ints:
        nib = _HEX[raw[:, :16 * len(ints)]].reshape(total, len(ints), 8, 2)
        packed = np.ascontiguousarray(nib[..., 0] * 16 + nib[..., 1])  # (rows, columns, 8 bytes)
        values = packed.view(">i8")[..., 0]
        for j, c in enumerate(ints):
            out[rename[c]] = values[:, j].astype(np.int64)
    for j, c in enumerate(times):
        txt = raw[:, 16 * len(ints) + 26 * j:16 * len(ints) + 26 * (j + 1)]

        def num(key: str, txt: npt.NDArray[np.uint8] = txt) -> npt.NDArray[np.int64]:
            start, n = _DIGITS[key]
            v = txt[:, start].astype(np.int64) - 48
            for k in range(1, n):
                v = v * 10 + (txt[:, start + k].astype(np.int64) - 48)
            return v

        days = days_from_civil(num("y"), num("mo"), num("d"))
        us = (days * 86400 + num("h") * 3600 + num("mi") * 60 + num("s")) * 1_000_000 + num("us")
        out[rename[c]] = us / 1e6
    return _sort(kind, _in_id_order(out))


def _adbc_connect() -> Any | None:
    """An Arrow database connection (ADBC, Apache Arrow's PostgreSQL driver) to Django's PostgreSQL
    database, or None when the database is not PostgreSQL.  ADBC reads a query's rows with a binary COPY
    parsed in C++ straight into Arrow columns (ADR 0011): ~40 % less time than the server-built arrays of
    ``_read_chunk``, and it leaves Python's interpreter free while it reads."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    import adbc_driver_postgresql.dbapi as adbc
    from psycopg.conninfo import make_conninfo

    sd = connection.settings_dict
    params = {"dbname": sd["NAME"], "user": sd.get("USER") or None, "password": sd.get("PASSWORD") or None,
              "host": sd.get("HOST") or None, "port": str(sd["PORT"]) if sd.get("PORT") else None}
    params.update({k: str(v) for k, v in (sd.get("OPTIONS") or {}).items() if isinstance(v, str | int)})
    conn = adbc.connect(make_conninfo(**{k: v for k, v in params.items() if v is not None}), autocommit=True)
    with conn.cursor() as cur:  # JIT compiling a plain scan costs ~0.3 s a chunk and saves nothing
        cur.execute("SET jit = off")
    return conn


def _read_chunk_adbc(conn: Any, kind: str, after: int, upto: int) -> dict[str, npt.NDArray[Any]] | None:
    """``_read_chunk`` through an ADBC connection (committed rows only: a connection of its own), unsorted:
    the rows in id order."""
    import polars as pl

    model, cols, tcol = SOURCES[kind]
    names = ", ".join(f'"{c}"' for c in cols)
    # no ORDER BY: for a range the planner would sort (~0.6 s per 2M rows); rows come in storage order,
    # which is id order unless pruning freed space, and ``_in_id_order`` restores it when it is not
    sql = (f'SELECT {names} FROM "{model._meta.db_table}" WHERE "id" > {int(after)} '  # noqa: S608
           f'AND "id" <= {int(upto)}')
    with conn.cursor() as cur:
        cur.execute(sql)
        table = pl.from_arrow(cur.fetch_arrow())
    df = table.to_frame().unnest(table.name) if isinstance(table, pl.Series) else table
    if not df.height:
        return None
    out: dict[str, npt.NDArray[Any]] = {}
    for c in cols:
        name = "device" if c == "device_id" else ("ts" if c == tcol else c)
        col = df[c]
        if col.dtype == pl.Datetime:
            out[name] = col.dt.epoch("us").to_numpy() / 1e6
        elif col.dtype == pl.String:
            out[name] = col.to_numpy().astype(object)
        else:
            out[name] = col.to_numpy().astype(np.int64, copy=False)
    return out


def _read_segments(kind: str, after: int, upto: int) -> dict[str, npt.NDArray[Any]] | None:
    """The rows of ``kind`` with ``after`` < id ≤ ``upto`` from the column segments ingest wrote beside them
    (ADR 0012), sorted by device and time like ``_read_chunk`` -- only for a range the kind's
    ``SegmentMark`` covers."""
    from django.db import connection

    from jiliang.engine.segments import decode_range

    table = TelemetrySegment._meta.db_table
    sql = (f'SELECT "data" FROM "{table}" WHERE "kind" = %s AND "last_id" > %s AND "first_id" <= %s '  # noqa: S608
           'ORDER BY "first_id"')
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as raw:  # bytea in the binary format, not as hex text
            raw.execute(sql, [kind, after, upto], binary=True)
            blobs = [r[0] for r in raw.fetchall()]
    else:
        with connection.cursor() as cur:
            cur.execute(sql, [kind, after, upto])
            blobs = [r[0] for r in cur.fetchall()]
    cols = decode_range(blobs, after, upto)
    if not cols or not cols["id"].size:
        return None
    tcol = SOURCES[kind][2]
    out: dict[str, npt.NDArray[Any]] = {}
    for c, v in cols.items():
        if c == tcol:
            out["ts"] = v / 1e6
        else:
            out["device" if c == "device_id" else c] = v
    return _sort(kind, _in_id_order(out))


def _covered(kind: str, after: int) -> bool:
    """Whether every row of ``kind`` with an id above ``after`` has its column segment."""
    if kind not in _segment_columns():
        return False
    mark = SegmentMark.objects.filter(kind=kind).values_list("covered_after", flat=True).first()
    return mark is not None and after >= mark


def _consume_segments(kind: str, keys: list[str] | None = None) -> None:
    """Delete the kind's segments every enabled detector of the kind (or every cursor of ``keys``: the
    stream publisher's) has read past, and raise its mark to there (rows at or below it are read as rows
    again, e.g. by a detector enabled later)."""
    if kind not in _segment_columns():
        return
    if keys is None:
        keys = [d.key for d in enabled_detectors() if d.kind == kind]
    lasts = dict(DetectorCursor.objects.filter(key__in=keys).values_list("key", "last_id"))
    if not keys or len(lasts) < len(keys):
        return
    done = min(lasts.values())
    mark = SegmentMark.objects.select_for_update().filter(kind=kind).first()
    if mark is None:
        return
    TelemetrySegment.objects.filter(kind=kind, last_id__lte=done).delete()
    if done > mark.covered_after:
        mark.covered_after = done
        mark.save(update_fields=["covered_after"])


def _in_id_order(out: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """The columns in id order, as the rows are read (ties in the (device, time) sort keep that order)."""
    if out["id"].size > 1 and not (np.diff(out["id"]) > 0).all():
        order = np.argsort(out["id"], kind="stable")
        return {k: v[order] for k, v in out.items()}
    return out


# --- registry data some detectors need beside the telemetry, cached between runs --------------------------

DEFAULT_CAPACITY_MILLI_PER_H = {"water_meter": 3125.0, "gas_meter": 6000.0, "electricity_meter": 13800.0}
_REGISTRY_CACHE: dict[str, Any] = {}


def _capacity_of(itype: str, params: dict[str, Any] | None) -> float:
    """Water: Q4 = 1.25 Q3 (m³/h → L/h); gas: qmax; electricity: Imax × 230 V (Wh/h)."""
    p = params or {}
    if itype == "water_meter" and p.get("Q3_m3h"):
        return 1.25 * float(p["Q3_m3h"]) * 1000
    if itype == "gas_meter" and p.get("qmax_m3h"):
        return float(p["qmax_m3h"]) * 1000
    if itype == "electricity_meter" and p.get("Imax_a"):
        return float(p["Imax_a"]) * 230
    return DEFAULT_CAPACITY_MILLI_PER_H.get(itype, 13800.0)


def load_extras(devices: npt.NDArray[np.int64] | None = None) -> dict[str, Any]:
    """Place, meter capacity, filed software checksum and public key of the registry's instruments that
    can send telemetry, loaded once and kept until an instrument changes (the registry's latest
    ``updated_at`` and row count are the cache key)."""
    from django.db.models import Count, Max

    cached = _REGISTRY_CACHE.get("data")
    if cached is not None and _REGISTRY_CACHE.get("pinned"):  # checked once per detector run
        return dict(cached)
    stamp = Instrument.objects.aggregate(m=Max("updated_at"), n=Count("id"))
    key = (stamp["m"], stamp["n"], Instrument._meta.db_table)
    if cached is None or _REGISTRY_CACHE.get("key") != key:
        from jiliang.engine.telemetry import DEVICE_TYPES

        types: set[str] = set().union(*DEVICE_TYPES.values())
        place, capacity, sw_hash, public_key = {}, {}, {}, {}
        # the raw query sends ``params`` as text: only meters' parameters are decoded (orjson), the other
        # ~60 % of the registry never need theirs
        from django.db import connection

        table = Instrument._meta.db_table
        marks = ", ".join(["%s"] * len(types))
        as_text = "::text" if connection.vendor == "postgresql" else ""
        with connection.cursor() as cur:
            cur.execute(f'SELECT "id", "instrument_type_id", "place_id", "params"{as_text}, "sw_hash", '  # noqa: S608
                        f'"public_key_hex" FROM "{table}" WHERE "instrument_type_id" IN ({marks})', sorted(types))
            rows = cur.fetchall()
        for pk, itype, pl, params, sw, pub in rows:
            place[pk], sw_hash[pk], public_key[pk] = pl, sw, pub
            if itype in DEFAULT_CAPACITY_MILLI_PER_H:
                capacity[pk] = _capacity_of(itype, orjson.loads(params) if isinstance(params, str | bytes) else params)
            else:
                capacity[pk] = _capacity_of(itype, None)
        ids = np.array(sorted(place), dtype=np.int64)
        cached = {"place": place, "capacity": capacity, "sw_hash": sw_hash, "public_key": public_key,
                  # the same as sorted arrays, for per-row look-ups with np.searchsorted
                  "ids": ids, "place_of": np.array([place[i] or -i for i in ids.tolist()], dtype=np.int64),
                  "capacity_of": np.array([capacity[i] for i in ids.tolist()], dtype=np.float64)}
        _REGISTRY_CACHE.update(data=cached, key=key)
    return dict(cached)


def _per_row(batch: dict[str, npt.NDArray[Any]], values: npt.NDArray[Any], missing: npt.NDArray[Any]
             ) -> npt.NDArray[Any]:
    """Each row's entry of a registry array aligned with ``load_extras()["ids"]`` (``missing[k]`` for the
    batch's k-th device when it is not there), looked up once per device of the (device-sorted) batch."""
    ids = load_extras()["ids"]
    devices, starts, ends = groups(np.asarray(batch["device"], dtype=np.int64))
    per = missing
    if ids.size:
        pos = np.minimum(np.searchsorted(ids, devices), ids.size - 1)
        per = np.where(ids[pos] == devices, values[pos], missing)
    return np.repeat(per, ends - starts)


def _lookup(batch: dict[str, npt.NDArray[Any]], table: dict[int, Any]) -> list[Any]:
    """The table's value for each row's device (None when absent), one dictionary look-up per device."""
    devices, inverse = np.unique(batch["device"], return_inverse=True)
    per = [table.get(d) for d in devices.tolist()]
    return [per[i] for i in inverse.tolist()]


def _filed_hash(batch: dict[str, npt.NDArray[Any]]) -> None:
    filed = load_extras(batch["device"])["sw_hash"]
    batch["filed_sw_hash"] = np.array([v or "" for v in _lookup(batch, filed)], dtype=object)


def _verification_distance(batch: dict[str, npt.NDArray[Any]]) -> None:
    """Days from each row's time to the nearest recorded verification (检定) of its device (``inf`` when the
    device has none), from the verification dates at noon UTC."""
    vdev: list[int] = []
    vday: list[float] = []
    for dev, date in Verification.objects.filter(instrument_id__in=np.unique(batch["device"]).tolist()).values_list(
            "instrument_id", "date"):
        vdev.append(dev)
        vday.append(dt.datetime.combine(date, dt.time(12), tzinfo=dt.UTC).timestamp() / 86400)
    batch["days_from_verification"] = nearest_distance(np.asarray(batch["device"], dtype=np.int64),
                                                       np.asarray(batch["ts"], dtype=np.float64) / 86400,
                                                       np.array(vdev, dtype=np.int64), np.array(vday, dtype=np.float64))


def _place(batch: dict[str, npt.NDArray[Any]]) -> None:
    """Each row's place (a device without one is its own place, ``-device``)."""
    devices = groups(np.asarray(batch["device"], dtype=np.int64))[0]
    batch["place"] = _per_row(batch, load_extras()["place_of"], -devices)


def _capacity(batch: dict[str, npt.NDArray[Any]]) -> None:
    devices = groups(np.asarray(batch["device"], dtype=np.int64))[0]
    batch["max_rate_milli_per_h"] = _per_row(batch, load_extras()["capacity_of"], np.full(devices.size, 13800.0))


def _public_key(batch: dict[str, npt.NDArray[Any]]) -> None:
    keys = load_extras(batch["device"])["public_key"]
    batch["public_key"] = np.array([v or "" for v in _lookup(batch, keys)], dtype=object)


EXTRAS: dict[str, Callable[[dict[str, npt.NDArray[Any]]], None]] = {
    "charger.ocmf_signature": _public_key,
    "scale.software_checksum": _filed_hash,
    "scale.unauthorized_event": _verification_distance,
    "meter.stuck_register": _place,
    "meter.implausible_jump": _capacity,
}


def _upsert_alerts(key: str, findings: list[Finding], report: DetectorReport) -> None:
    """Open an alert per finding's device, or update the device's open alert of this detector.  Written
    with two parameterised statements run over all rows (``executemany``: one pipeline on PostgreSQL), the
    evidence encoded with orjson -- a detector can report thousands of devices in one chunk, and building
    ORM objects and CASE expressions for them took longer than the detection itself."""
    if not findings:
        return
    from django.db import connection

    now = connection.ops.adapt_datetimefield_value(timezone.now())
    last = {f.device: f for f in findings}  # a detector reports a device once; the last finding wins
    devices = sorted(last)
    open_alerts: dict[int, tuple[int, str]] = {}
    info: dict[int, tuple[int, str]] = {}  # device -> (owner, region code)
    pg = connection.vendor == "postgresql"
    if pg:  # one array parameter, not 10,000 placeholders for the driver to parse
        with connection.cursor() as cur:
            cur.execute(f'SELECT "id", "device_id", "severity" FROM "{Alert._meta.db_table}" WHERE "detector" = %s '  # noqa: S608
                        'AND "status" = ANY(%s::text[]) AND "device_id" = ANY(%s::bigint[])',
                        [key, list(Alert.OPEN), devices])
            open_alerts.update((d, (pk, sev)) for pk, d, sev in cur.fetchall())
            cur.execute(f'SELECT "id", "owner_id", "region_id" FROM "{Instrument._meta.db_table}" '  # noqa: S608
                        'WHERE "id" = ANY(%s::bigint[])', [devices])
            info.update((pk, (owner, region)) for pk, owner, region in cur.fetchall())
    for part in range(0, 0 if pg else len(devices), 10_000):
        some = devices[part:part + 10_000]
        open_alerts.update((d, (pk, sev)) for pk, d, sev in Alert.objects.filter(
            detector=key, status__in=Alert.OPEN, device_id__in=some).values_list("id", "device_id", "severity"))
        info.update((pk, (owner, region)) for pk, owner, region in
                    Instrument.objects.filter(pk__in=some).values_list("id", "owner_id", "region_id"))
    new: list[tuple[Any, ...]] = []
    changed: list[tuple[Any, ...]] = []
    for d in devices:
        f = last[d]
        evidence = _json(f.evidence)
        if d not in open_alerts:
            owner, region = info[d]
            new.append((key, d, owner, region, f.severity, Alert.Status.NEW.value, now, now, 1, evidence, "", ""))
        else:
            pk, severity = open_alerts[d]
            if SEVERITY_RANK[f.severity] > SEVERITY_RANK[severity]:
                severity = f.severity
            changed.append((severity, evidence, now, pk))
    table = Alert._meta.db_table
    cast = "::jsonb" if pg else ""
    with connection.cursor() as cur:
        if pg:
            _upsert_pg(cur, table, new, changed, now)
            new_rows, changed_rows = [], []
        else:
            new_rows, changed_rows = new, changed
        for rows in _parts(new_rows, 500):
            values = ", ".join([f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s{cast}, %s, %s)"] * len(rows))
            cur.execute(f'INSERT INTO "{table}" ("detector", "device_id", "owner_id", "region_id", "severity", '  # noqa: S608
                        '"status", "opened_at", "updated_at", "occurrences", "evidence", "decision_reason", '
                        f'"decided_by") VALUES {values}', [v for row in rows for v in row])
        for rows in _parts(changed_rows, 500):
            # one UPDATE … FROM (VALUES …) per 500 alerts (PostgreSQL, and SQLite since 3.33)
            typed = ("(%s, %s::jsonb, %s::timestamptz, %s::bigint)" if pg else "(%s, %s, %s, %s)")
            values = ", ".join([typed] * len(rows))
            cur.execute(f'WITH v("severity", "evidence", "updated_at", "id") AS (VALUES {values}) '  # noqa: S608
                        f'UPDATE "{table}" SET "severity" = v."severity", "evidence" = v."evidence", '
                        f'"updated_at" = v."updated_at", "occurrences" = "{table}"."occurrences" + 1 '
                        f'FROM v WHERE "{table}"."id" = v."id"', [v for row in rows for v in row])
    report.opened += len(new)
    report.updated += len(changed)


def _upsert_pg(cur: Any, table: str, new: list[tuple[Any, ...]], changed: list[tuple[Any, ...]], now: Any) -> None:
    """PostgreSQL: the new alerts in one ``INSERT … SELECT FROM unnest(arrays)`` and the changed ones in one
    ``UPDATE … FROM unnest(arrays)`` -- a column per parameter (multi-row ``VALUES`` made the driver parse
    thousands of placeholders, ~1 s a run)."""
    if new:
        cols = list(zip(*new, strict=True))
        cur.execute(f'INSERT INTO "{table}" ("detector", "device_id", "owner_id", "region_id", "severity", '  # noqa: S608
                    '"status", "opened_at", "updated_at", "occurrences", "evidence", "decision_reason", "decided_by") '
                    'SELECT v.detector, v.device, v.owner, v.region, v.severity, v.status, %s, %s, 1, '
                    "v.evidence::jsonb, '', '' FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], "
                    "%s::text[], %s::text[], %s::text[]) AS v(detector, device, owner, region, severity, status, "
                    "evidence)", [now, now, list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]), list(cols[4]),
                                  list(cols[5]), list(cols[9])])
    if changed:
        cols = list(zip(*changed, strict=True))
        cur.execute(f'UPDATE "{table}" SET "severity" = v.severity, "evidence" = v.evidence::jsonb, '  # noqa: S608
                    f'"updated_at" = %s, "occurrences" = "{table}"."occurrences" + 1 '
                    'FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS v(severity, evidence, id) '
                    f'WHERE "{table}"."id" = v.id', [now, list(cols[0]), list(cols[1]), list(cols[3])])


def _parts(rows: list[Any], size: int) -> list[list[Any]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _json(value: Any) -> str:
    """JSON text of a finding's evidence or a detector's state, with orjson (NumPy numbers included; a
    non-finite number becomes null -- JSON has no NaN, and PostgreSQL's jsonb refuses it); the standard
    encoder for a type orjson does not know."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return json.dumps(value, default=str)


def _load_state(cursor: DetectorCursor) -> dict[str, Any]:
    """A cursor's state, decoded with orjson (the ORM's standard decoder took ~0.1 s per meter detector and
    chunk for the tens of thousands of devices a state holds)."""
    from django.db import connection

    if "state" in cursor.__dict__:
        return dict(cursor.state)
    cast = "::text" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cur:
        cur.execute(f'SELECT "state"{cast} FROM "{DetectorCursor._meta.db_table}" WHERE "id" = %s',  # noqa: S608
                    [cursor.pk])
        row = cur.fetchone()
    text = row[0] if row else None
    if text is None:
        return {}
    value = orjson.loads(text) if isinstance(text, str | bytes) else text
    return value if isinstance(value, dict) else {}


def _save_cursor(cursor: DetectorCursor, state: dict[str, Any] | None) -> None:
    """Store a cursor's position and, when the detector ran, its new state (tens of thousands of devices,
    encoded by ``_json``: orjson, ~10 times faster than the standard encoder and equal once decoded)."""
    from django.db import connection

    table = DetectorCursor._meta.db_table
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cur:
        if state is None:
            cur.execute(f'UPDATE "{table}" SET "last_id" = %s, "updated_at" = %s WHERE "id" = %s',  # noqa: S608
                        [cursor.last_id, now, cursor.pk])
            return
        encoded = _json(state)
        cast = "::jsonb" if connection.vendor == "postgresql" else ""
        cur.execute(f'UPDATE "{table}" SET "last_id" = %s, "state" = %s{cast}, "updated_at" = %s '  # noqa: S608
                    'WHERE "id" = %s', [cursor.last_id, encoded, now, cursor.pk])


def enabled_detectors() -> list[Detector]:
    configs = {c.key: c for c in DetectorConfig.objects.all()}
    out = []
    for key, cls in REGISTRY.items():
        c = configs.get(key)
        if c is None or c.enabled:
            out.append(cls(**(c.params if c else {})))
    return out


def _id_bounds(kind: str, after: int) -> tuple[int, int]:
    """The smallest id above ``after`` and the largest id of the kind's table (0, 0 when there is none)."""
    from django.db import connection

    table = SOURCES[kind][0]._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f'SELECT (SELECT min("id") FROM "{table}" WHERE "id" > %s), (SELECT max("id") FROM "{table}")',  # noqa: S608
                    [after])
        lo, hi = cur.fetchone()
    return (int(lo), int(hi)) if lo is not None else (0, 0)


READERS = 2  # background connections reading parts of the next chunk side by side


class _Prefetch:
    """Reads the next chunk in the background while the detectors run on the current one: the database
    builds and sends chunk k+1 (on PostgreSQL over ``READERS`` ADBC connections, each a part of the id
    range) while NumPy works on chunk k.  A chunk is the id range (low, top]; a prefetched one is used only
    if it is exactly the range the locked cursors ask for, otherwise it is dropped and read again.  Off
    when the caller holds a transaction (another connection cannot see its uncommitted rows) and for an
    in-memory SQLite database: then every chunk is read on the caller's connection."""

    def __init__(self, chunk: int) -> None:
        from django.db import connection

        self.chunk = chunk
        in_memory = connection.vendor == "sqlite" and connection.is_in_memory_db()  # type: ignore[attr-defined]
        self.enabled = not connection.in_atomic_block and not in_memory
        self.parts = READERS if connection.vendor == "postgresql" else 1
        self.pending: tuple[str, int, int, bool, list[Any]] | None = None
        self.pool: Any = None
        self.local: Any = None
        self.arrows: list[Any] = []

    def _read_part(self, kind: str, after: int, upto: int, segments: bool) -> dict[str, npt.NDArray[Any]] | None:
        """One part of a chunk, on this thread's own connection (ADBC on PostgreSQL), or its segments."""
        if segments:  # one part: sorted here, in the background too
            return _read_segments(kind, after, upto)
        conn = getattr(self.local, "arrow", None)
        if conn is None:
            conn = _adbc_connect() or False
            self.local.arrow = conn
            if conn:
                self.arrows.append(conn)
        return _read_chunk_adbc(conn, kind, after, upto) if conn else _read_chunk(kind, after, upto)

    def request(self, kind: str, low: int, top: int, segments: bool = False) -> None:
        """Start reading the rows of ``kind`` with ``low`` < id ≤ ``top`` (from its segments: one part)."""
        if not self.enabled or top <= low:
            return
        if self.pool is None:
            import threading
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.parts, thread_name_prefix="jiliang-detect-read")
            self.local = threading.local()
        cuts = np.linspace(low, top, (1 if segments else self.parts) + 1).round().astype(np.int64).tolist()
        futures = [self.pool.submit(self._read_part, kind, a, b, segments) for a, b in itertools.pairwise(cuts)
                   if b > a]
        self.pending = (kind, low, top, segments, futures)

    def take(self, kind: str, low: int, top: int, segments: bool = False) -> dict[str, npt.NDArray[Any]] | None:
        """The rows of ``kind`` with ``low`` < id ≤ ``top``, sorted by device and time: the prefetched ones
        when they are that range, else read now (in the background too when it is on)."""
        pending = self.pending
        if pending is not None and pending[:4] != (kind, low, top, segments):
            for f in pending[4]:
                f.result()  # a stale read: wait for it, never leave it running beside the next
            pending = None
        if pending is None and self.enabled:
            self.request(kind, low, top, segments)
            pending = self.pending
        self.pending = None
        if pending is None:
            return _read_segments(kind, low, top) if segments else _read_chunk(kind, low, top)
        parts = [p for p in (f.result() for f in pending[4]) if p is not None]
        if not parts:
            return None
        if segments:
            one: dict[str, npt.NDArray[Any]] = parts[0]  # one part, already sorted (``_read_segments``)
            return one
        out = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return _sort(kind, _in_id_order(out))

    def close(self) -> None:
        if self.pool is not None:
            if self.pending is not None:
                for f in self.pending[4]:
                    f.result()
                self.pending = None
            from django.db import connections

            def close() -> None:
                connections.close_all()  # this thread's own Django connection

            for f in [self.pool.submit(close) for _ in range(self.parts)]:
                f.result()
            for conn in self.arrows:
                conn.close()
            self.pool.shutdown(wait=True)
            self.pool = None


def run_detectors(*, keys: list[str] | None = None, chunk: int = CHUNK) -> RunReport:
    """Run the enabled detectors over the records past their cursors.  Detectors reading the same kind
    share each chunk -- ``chunk`` consecutive ids, read once from the lowest cursor; each detector sees only
    the rows past its own -- and their alerts, cursors and states are committed together, chunk by chunk;
    the next chunk is read in the background meanwhile (:class:`_Prefetch`).  Records stored while the
    run goes on are left to the next run."""
    report = RunReport()
    by_kind: dict[str, list[Detector]] = {}
    reports: dict[str, DetectorReport] = {}
    for det in enabled_detectors():
        if not keys or det.key in keys:
            by_kind.setdefault(det.kind, []).append(det)
            reports[det.key] = DetectorReport(det.key)
    prefetch = _Prefetch(chunk)
    load_extras()
    _REGISTRY_CACHE["pinned"] = True
    try:
        for kind, dets in by_kind.items():
            _run_kind(kind, dets, chunk, reports, prefetch)
    finally:
        _REGISTRY_CACHE["pinned"] = False
        prefetch.close()
    report.detectors = list(reports.values())
    return report


def _run_kind(kind: str, dets: list[Detector], chunk: int, reports: dict[str, DetectorReport], prefetch: _Prefetch
              ) -> None:
    """The detectors of one kind, chunk by chunk up to the table's largest id when the run starts; each
    chunk's alerts, cursors and states in one transaction."""
    end: int | None = None
    while True:
        with transaction.atomic():
            cursors = {}
            for det in dets:
                cursors[det.key], _ = DetectorCursor.objects.select_for_update().defer("state").get_or_create(
                    key=det.key)
            low = min(c.last_id for c in cursors.values())
            first, largest = _id_bounds(kind, low)
            end = largest if end is None else end
            if not first or first > end:
                break
            low = max(low, first - 1)  # skip a gap in the ids (pruned or never committed)
            top = min(low + chunk, end)
            segments = _covered(kind, low)  # the rows' column segments, not the rows (ADR 0012)
            batch = prefetch.take(kind, low, top, segments)
            if top < end:
                prefetch.request(kind, top, min(top + chunk, end), segments)
            for det in dets:
                detect_range(det, cursors[det.key], batch, low, top, reports[det.key])
            _consume_segments(kind)


def detect_range(det: Detector, cursor: DetectorCursor, batch: dict[str, npt.NDArray[Any]] | None, low: int, top: int,
                 report: DetectorReport) -> None:
    """Run one detector over the rows of ``batch`` (the rows of the id range (``low``, ``top``], sorted by
    device and time) past its cursor, open or update its alerts and move the cursor to ``top`` with the new
    state -- inside the caller's transaction, which holds the cursor's row locked."""
    mine = batch
    if batch is not None and cursor.last_id > low:
        keep = batch["id"] > cursor.last_id
        mine = {k: v[keep] for k, v in batch.items()}
    state = None
    if mine is not None and mine["id"].size:
        mine = dict(mine)
        if det.key in EXTRAS:
            EXTRAS[det.key](mine)
        findings, state = det.run(mine, _load_state(cursor))
        _upsert_alerts(det.key, findings, report)
        report.rows += int(mine["id"].size)
        report.findings += len(findings)
    cursor.last_id = max(cursor.last_id, top)
    _save_cursor(cursor, state)


TRANSITIONS = {"new": {"triaged", "confirmed", "dismissed"}, "triaged": {"confirmed", "dismissed"},
               "confirmed": set(), "dismissed": set()}


@transaction.atomic
def alert_decide(*, actor: Any, alert_id: int, status: str, reason: str = "") -> Alert:
    """Move an alert along new → triaged → confirmed / dismissed; dismissing needs a reason."""
    if not Alert.objects.restrict(actor, "view").filter(pk=alert_id).exists():
        raise NotFound(f"alert {alert_id} not found")
    if not Alert.objects.restrict(actor, "change").filter(pk=alert_id).exists():
        raise PermissionDenied("you may not decide this alert")
    a = Alert.objects.select_for_update().get(pk=alert_id)
    if status not in TRANSITIONS.get(a.status, set()):
        raise JiliangError(f"an alert cannot go from {a.status} to {status}", code="validation_failed")
    if status == "dismissed" and not reason.strip():
        raise JiliangError("dismissing an alert needs a reason", code="validation_failed")
    from jiliang.core.changelog import snapshot

    before = snapshot(a)
    a.status, a.decision_reason = status, reason.strip()
    a.decided_by = str(getattr(actor, "username", actor))[:150]
    a.updated_at = timezone.now()
    a.save(update_fields=["status", "decision_reason", "decided_by", "updated_at"])
    log_change(actor=actor, obj=a, action="update", before=before)
    if status == "confirmed":  # a confirmed alert enters the owner's credit file (C4 feeds C6)
        from jiliang.supervision.services import credit_event_record

        credit_event_record(actor=actor, entity_id=a.owner_id, kind="alert_confirmed",
                            occurred_on=timezone.localdate(), source=f"alert:{a.pk}", note=a.detector)
    return a


def alerts_as_json(qs: Any) -> list[dict[str, Any]]:
    """SPEC 3.7: id, device (device_id), detector, severity, status, opened_at, evidence, and more."""
    return [{"id": a.id, "device": a.device.device_id, "detector": a.detector, "severity": a.severity,
             "status": a.status, "opened_at": a.opened_at.isoformat(), "updated_at": a.updated_at.isoformat(),
             "occurrences": a.occurrences, "owner": a.owner.name, "region": a.region_id, "evidence": a.evidence}
            for a in qs.select_related("device", "owner")]
