"""Storing telemetry: validated rows go to their typed table, rejected lines to the quarantine.

Records are processed in batches; each batch commits its rows and its rejections in one transaction, and
only then is the batch acknowledged (the command's counts, the HTTP response, the MQTT PUBACK).  A repeated
(``device``, ``seq``) — or (place, tank, time) for tank records — is ignored, so a sender that retries
after a crash duplicates nothing.

Fast path (ADR 0010): batches are parsed by ``engine.telemetry.BatchParser`` (column-wise for the
high-volume kinds) in a forked child process while this one stores the previous batch, and column-wise
rows are sorted by (device, seq) so index pages are touched in order.  SQLite runs ``INSERT OR IGNORE``
with many rows in each statement (``core.bulk.sqlite_insert_columns``), a large page cache and a longer
write-ahead-log checkpoint interval.  PostgreSQL COPYs column-wise rows in the binary format,
built with NumPy, straight into the table under a savepoint; only when that meets an already stored key
(a resend) is the batch COPYed into a temporary staging table and inserted with ``ON CONFLICT DO
NOTHING``.  Other kinds always take the staging way.
"""

from __future__ import annotations

import datetime as dt
import itertools
import queue
import traceback
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import connection, models, transaction
from django.utils import timezone

from jiliang.core import bulk
from jiliang.engine.telemetry import (
    DEVICE_TYPES,
    KINDS,
    ROW_COLUMNS,
    TIME_COLUMNS,
    BatchParser,
    Device,
    ParseResult,
    Place,
)
from jiliang.monitoring.models import (
    ChargerSession,
    DispenserSale,
    MeterReading,
    Quarantine,
    ScaleEvent,
    ScaleRecheck,
    ScaleTxn,
    TankDelivery,
    TankReading,
)
from jiliang.registry.models import Instrument
from jiliang.registry.models import Place as PlaceModel

TABLES: dict[str, tuple[type[models.Model], tuple[str, ...], tuple[str, ...]]] = {
    # kind: (model, columns in the parser's row order, conflict key)
    "scale.txn": (ScaleTxn, ("device_id", "ts", "seq", "net_g", "tare_g", "unit_price_fen_per_kg", "amount_fen"),
                  ("device_id", "seq")),
    "scale.event": (ScaleEvent, ("device_id", "ts", "seq", "event", "sw_id", "sw_hash"), ("device_id", "seq")),
    "scale.recheck": (ScaleRecheck, ("place_id", "device_id", "ts", "claimed_g", "actual_g"),
                      ("device_id", "ts", "place_id")),
    "charger.session": (ChargerSession, ("device_id", "seq", "session_id", "start_ts", "end_ts", "meter_start_wh",
                                         "meter_end_wh", "energy_wh", "vehicle", "bms_energy_wh", "amount_fen",
                                         "ocmf"), ("device_id", "seq")),
    "dispenser.sale": (DispenserSale, ("device_id", "ts", "seq", "volume_ml", "amount_fen", "totalizer_ml"),
                       ("device_id", "seq")),
    "tank.reading": (TankReading, ("place_id", "tank", "ts", "volume_ml", "temp_c"), ("place_id", "tank", "ts")),
    "tank.delivery": (TankDelivery, ("place_id", "tank", "ts", "volume_ml"), ("place_id", "tank", "ts")),
    "meter.reading": (MeterReading, ("device_id", "ts", "seq", "register_milli", "flags"), ("device_id", "seq")),
}
assert set(TABLES) == set(KINDS)
assert all(TABLES[k][1] == ROW_COLUMNS[k] for k in KINDS)
TIME_COLUMN = {k: "start_ts" if k == "charger.session" else "ts" for k in KINDS}  # the partition key
# The high-volume kinds the detectors read: each stored batch is also written as a column segment (ADR 0012)
# holding these columns (the detector runner's, ``detection.SOURCES``), so detection never reads the rows back.
SEGMENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "scale.txn": ("id", "device_id", "ts", "seq", "net_g", "unit_price_fen_per_kg", "amount_fen"),
    "meter.reading": ("id", "device_id", "ts", "seq", "register_milli", "flags"),
}

BATCH = 100_000
WAL_CHECKPOINT_PAGES = 65_536


@dataclass
class IngestReport:
    lines: int = 0
    accepted: int = 0          # new records stored
    duplicates: int = 0        # valid records already stored (idempotent repeats)
    rejected: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejections: list[tuple[int, str | None, str]] = field(default_factory=list)  # first few, for display

    def as_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": self.rejected, "by_kind": dict(self.by_kind),
                "rejections": [{"line": ln, "field": f, "reason": r} for ln, f, r in self.rejections]}


def registry_snapshot() -> tuple[dict[str, Device], dict[str, Place]]:
    """Every instrument that can send telemetry and every place, as the parser needs them."""
    types: set[str] = set().union(*DEVICE_TYPES.values())
    devices: dict[str, Device] = {}
    tanks: dict[int, set[str]] = defaultdict(set)
    for dev_id, pk, itype, owner, place, tank in Instrument.objects.filter(instrument_type_id__in=types).values_list(
            "device_id", "id", "instrument_type_id", "owner_id", "place_id", "tank").iterator(chunk_size=20000):
        devices[dev_id] = Device(pk, itype, owner, place)
        if tank and place is not None:
            tanks[place].add(tank)
    places = {key: Place(pk, kind, op, frozenset(tanks.get(pk, ()))) for key, pk, kind, op in
              PlaceModel.objects.values_list("key", "id", "kind", "operator_id").iterator(chunk_size=20000)}
    return devices, places


def _sqlite_row(row: tuple[Any, ...]) -> list[Any]:
    return [v.replace(tzinfo=None).isoformat(" ") if isinstance(v, dt.datetime) else v for v in row]


def _conflict_key(kind: str) -> tuple[str, ...]:
    """The unique key ``ON CONFLICT`` names: on a partitioned PostgreSQL table the partition key (the time
    column) is part of every unique index (ADR 0010)."""
    from jiliang.monitoring.partitions import is_partitioned

    _model, _cols, key = TABLES[kind]
    tcol = TIME_COLUMN[kind]
    if tcol not in key and is_partitioned(TABLES[kind][0]):
        return (*key, tcol)
    return key


def _stage_and_insert(kind: str, write: Any, *, with_ids: bool = False) -> tuple[int, list[int]]:
    """PostgreSQL: COPY into a temporary stage (``write(copy)`` sends the data), then insert what is new;
    returns how many rows were new and, ``with_ids`` (the data carries its own ids), their ids."""
    model, cols, _key = TABLES[kind]
    table = model._meta.db_table
    names = ", ".join(f'"{c}"' for c in (("id", *cols) if with_ids else cols))
    stage = f"stage_{table}" + ("_ids" if with_ids else "")
    with connection.cursor() as cur:
        # only the loaded columns, without constraints: the target's own unique key does the dedupe
        cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" ON COMMIT DELETE ROWS AS '  # noqa: S608
                    f'SELECT {names} FROM "{table}" WITH NO DATA')
        write(cur.cursor, stage)
        conflict = ", ".join(f'"{c}"' for c in _conflict_key(kind))
        cur.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "{stage}" '  # noqa: S608
                    f"ON CONFLICT ({conflict}) DO NOTHING" + (' RETURNING "id"' if with_ids else ""))
        inserted = cur.rowcount
        ids = [r[0] for r in cur.fetchall()] if with_ids else []
        cur.execute(f'TRUNCATE "{stage}"')
        return int(inserted), ids


def _store(kind: str, rows: list[tuple[Any, ...]]) -> int:
    """Insert rows, ignoring ones already stored; returns how many were new."""
    if not rows:
        return 0
    model, cols, _key = TABLES[kind]
    table = model._meta.db_table
    names = ", ".join(f'"{c}"' for c in cols)
    if bulk.is_postgres():
        from jiliang.monitoring.partitions import ensure_partitions

        j = cols.index(TIME_COLUMN[kind])
        ensure_partitions(model, [r[j] for r in rows])

        def write(raw: Any, target: str) -> None:
            with raw.copy(f'COPY "{target}" ({names}) FROM STDIN') as copy:
                for r in rows:
                    copy.write_row(r)

        return _stage_and_insert(kind, write)[0]
    with connection.cursor() as cur:
        before = connection.connection.total_changes
        bulk.sqlite_insert_columns(cur, f'INSERT OR IGNORE INTO "{table}" ({names})',
                                   list(zip(*map(_sqlite_row, rows), strict=True)))
        return int(connection.connection.total_changes - before)


# --- column-wise rows ------------------------------------------------------------------------------------

PG_EPOCH_US = 946_684_800 * 1_000_000  # PostgreSQL's binary timestamps count from 2000-01-01
_PG_BINARY = {"bigint": ">i8", "integer": ">i4", "smallint": ">i2", "timestamp with time zone": ">i8",
              "double precision": ">f8"}
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8


def _column_types(model: type[models.Model], cols: tuple[str, ...]) -> list[str]:
    by_column = {f.column: f for f in model._meta.concrete_fields}
    return [str(by_column[c].db_type(connection)) for c in cols]


def pg_binary_copy(model: type[models.Model], cols: tuple[str, ...], data: dict[str, npt.NDArray[Any]]
                   ) -> bytes | None:
    """Rows as one PostgreSQL binary COPY stream, built column-wise with NumPy (times are µs since the Unix
    epoch); ``None`` when a value does not fit its column (the caller then lets the server say so)."""
    types = _column_types(model, cols)
    if any(t not in _PG_BINARY for t in types):
        return None
    n = data[cols[0]].size
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for j, t in enumerate(types):
        fields += [(f"l{j}", ">i4"), (f"v{j}", _PG_BINARY[t])]
    out = np.empty(n, dtype=fields)
    out["n"] = len(cols)
    for j, (c, t) in enumerate(zip(cols, types, strict=True)):
        v = data[c]
        if t in ("integer", "smallint"):
            info = np.iinfo(np.int32 if t == "integer" else np.int16)
            if v.size and (v.min() < info.min or v.max() > info.max):
                return None
        out[f"l{j}"] = int(_PG_BINARY[t][-1])
        out[f"v{j}"] = v - PG_EPOCH_US if c in TIME_COLUMNS else v
    return _PG_HEADER + out.tobytes() + b"\xff\xff"


def sqlite_times(us: npt.NDArray[np.int64]) -> list[str]:
    """µs since the epoch as Django writes datetimes to SQLite: naive UTC 'YYYY-MM-DD HH:MM:SS[.ffffff]'
    (years 1–9999).  Built column-wise: the digits of every row go into one byte matrix, which becomes
    Python strings in one conversion."""
    n = int(us.size)
    secs, frac = np.divmod(us, 1_000_000)
    days, sod = np.divmod(secs, 86400)
    # civil date from days since 1970-01-01 (H. Hinnant's algorithm), vectorised
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    hh, rest = np.divmod(sod, 3600)
    mi, ss = np.divmod(rest, 60)
    buf = np.empty((n, 19), dtype=np.uint8)
    for col, (value, width) in zip((0, 5, 8, 11, 14, 17), ((year, 4), (month, 2), (day, 2), (hh, 2), (mi, 2),
                                                         (ss, 2)), strict=True):
        for k in range(width):
            buf[:, col + k] = 48 + (value // 10 ** (width - 1 - k)) % 10
    buf[:, 4] = buf[:, 7] = ord("-")
    buf[:, 10] = ord(" ")
    buf[:, 13] = buf[:, 16] = ord(":")
    out: list[str] = buf.view("S19").ravel().astype("U19").tolist()
    for i in np.flatnonzero(frac).tolist():
        out[i] += f".{int(frac[i]):06d}"
    return out


def _store_columns(kind: str, data: dict[str, npt.NDArray[Any]]) -> int:
    """Insert column-wise rows (see ``ParseResult.columns``), ignoring ones already stored; for the kinds of
    ``SEGMENT_COLUMNS`` the rows get their ids here and the stored ones are also written as a segment."""
    n = int(data["line"].size)
    if not n:
        return 0
    model, cols, key = TABLES[kind]
    # sorted by the unique key, then by line: index pages are visited in order, and of two lines with the
    # same key the earlier one is stored, as the per-line order would
    order = np.lexsort((data["line"], *(data[c] for c in reversed(key))))
    data = {c: data[c][order] for c in cols}
    table = model._meta.db_table
    segment = kind in SEGMENT_COLUMNS
    if segment:
        _ensure_mark(kind)
        data["id"] = bulk.allocate_id_array(model, n)
    names_t = (("id",) if segment else ()) + cols
    names = ", ".join(f'"{c}"' for c in names_t)
    stored: npt.NDArray[np.bool_] | None = None  # which rows were new (None: all)
    if bulk.is_postgres():
        from jiliang.monitoring.partitions import ensure_partitions

        ensure_partitions(model, data[TIME_COLUMN[kind]])
        payload = pg_binary_copy(model, names_t, data)
        if payload is None:  # a value out of its column's range: the server says which (the batch fails)
            rows = list(zip(*(_python_values(c, data[c]) for c in cols), strict=True))
            return _store(kind, rows)

        def write(raw: Any, target: str) -> None:
            with raw.copy(f'COPY "{target}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
                copy.write(payload)

        import psycopg

        try:
            with transaction.atomic(), connection.cursor() as cur:
                write(cur.cursor, table)
            new = n
        except psycopg.errors.UniqueViolation:
            new, ids = _stage_and_insert(kind, write, with_ids=segment)
            if segment:
                stored = np.isin(data["id"], np.array(ids, dtype=np.int64))
    else:
        values = [sqlite_times(data[c]) if c in TIME_COLUMNS else data[c].tolist() for c in names_t]
        with connection.cursor() as cur:
            before = connection.connection.total_changes
            bulk.sqlite_insert_columns(cur, f'INSERT OR IGNORE INTO "{table}" ({names})', values)
            new = int(connection.connection.total_changes - before)
            if segment and new < n:  # some were repeats: which of the ids were stored
                cur.execute(f'SELECT "id" FROM "{table}" WHERE "id" >= %s AND "id" <= %s',  # noqa: S608
                            [int(data["id"][0]), int(data["id"][-1])])
                stored = np.isin(data["id"], np.array([r[0] for r in cur.fetchall()], dtype=np.int64))
    if segment and new:
        _write_segment(kind, data if stored is None else {c: v[stored] for c, v in data.items()})
    return new


def _ensure_mark(kind: str) -> bool:
    """The kind's ``SegmentMark``, made at the first segment with the table's largest id (rows stored before
    it have no segment); True when it was there already."""
    from django.db.models import Max

    from jiliang.monitoring.models import SegmentMark

    if SegmentMark.objects.filter(kind=kind).exists():
        return True
    top = TABLES[kind][0]._default_manager.aggregate(m=Max("id"))["m"] or 0
    SegmentMark.objects.get_or_create(kind=kind, defaults={"covered_after": top})
    return False


def segment_saved_row(kind: str, row: models.Model) -> None:
    """A row saved through the ORM: a one-row segment when the kind's mark exists (else the mark is made
    here, at or above the row, which is then read as a row)."""
    if _ensure_mark(kind):
        _write_segment(kind, {c: np.array([_segment_value(getattr(row, c))], dtype=np.int64)
                              for c in SEGMENT_COLUMNS[kind]})


def _segment_value(v: Any) -> int:
    if isinstance(v, dt.datetime):
        return (v - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return int(v)


def _write_segment(kind: str, data: dict[str, npt.NDArray[Any]]) -> None:
    """The stored rows of a batch as one column segment (``engine.segments``), in the rows' transaction."""
    from jiliang.engine.segments import encode
    from jiliang.monitoring.models import TelemetrySegment

    ids = data["id"]
    ts = data[TIME_COLUMN[kind]]
    TelemetrySegment.objects.create(
        kind=kind, first_id=int(ids.min()), last_id=int(ids.max()), rows=int(ids.size),
        max_ts=dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(ts.max())),
        data=encode({c: data[c] for c in SEGMENT_COLUMNS[kind]}))


def _python_values(column: str, values: npt.NDArray[Any]) -> list[Any]:
    if column in TIME_COLUMNS:
        return [dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=v) for v in values.tolist()]
    return list(values.tolist())


def _quarantine(result: ParseResult, source: str, received: dt.datetime) -> None:
    if not result.rejected:
        return
    ids = bulk.allocate_ids(Quarantine, len(result.rejected))
    bulk.insert_rows(Quarantine, ("id", "received_at", "source", "line_no", "field", "reason", "raw"),
                     ([i, received, source[:100], r.line, (r.field or "")[:50], r.reason[:300], r.raw]
                      for i, r in zip(ids, result.rejected, strict=True)))
    bulk.bump_sequence(Quarantine)


def _batches(lines: Iterable[bytes | str], size: int) -> Iterator[list[bytes | str]]:
    it = iter(lines)
    while batch := list(itertools.islice(it, size)):  # the lines are taken in C, not one by one here
        yield batch


def _parsed(lines: Iterable[bytes | str], parser: BatchParser, size: int) -> Iterator[tuple[int, ParseResult]]:
    """(lines in the batch, its parse) for each batch.  Input of more than one batch is parsed in a child
    process (``_ParseProcess``), one batch ahead of the caller, which meanwhile stores the previous batch;
    where processes cannot be forked, batch after batch here."""
    batches = _batches(lines, size)
    first = next(batches, None)
    if first is None:
        return
    second = next(batches, None)
    if second is None or _FORK is None:
        line = 1
        for chunk in itertools.chain([first], [second] if second is not None else [], batches):
            yield len(chunk), parser.parse_batch(chunk, first_line=line)
            line += len(chunk)
        return
    with _ParseProcess(parser) as child:
        yield from child.run(itertools.chain([first, second], batches))


def _fork_context() -> Any:
    import multiprocessing

    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform
        return None


_FORK = _fork_context()


def _parse_forever(parser: BatchParser, inbox: Any, outbox: Any) -> None:
    """The child's loop: parse each batch it is sent and send the result back; ``None`` ends it."""
    line = 1
    while (chunk := inbox.get()) is not None:
        try:
            outbox.put((len(chunk), parser.parse_batch(chunk, first_line=line)))
        except BaseException as exc:  # a parser bug: the caller raises it with the child's traceback
            outbox.put(RuntimeError(f"parsing lines from {line}: " + "".join(
                traceback.format_exception(exc)).rstrip()))
            return
        line += len(chunk)


class _ParseProcess:
    """A forked child that parses batches while the caller stores earlier ones (ADR 0010, session 5).

    In one process the parser and the store took turns holding the interpreter lock: a parsing thread made
    the ingest slower than parsing and storing one after the other, once storing had become fast.  The
    child inherits the parser (and with it the registry snapshot) through ``fork``, never touches the
    database, and exits with ``os._exit`` (the multiprocessing default for forked children), so the
    connections it inherited are left alone.  At most two batches are in flight."""

    def __init__(self, parser: BatchParser) -> None:
        assert _FORK is not None
        self.inbox = _FORK.Queue(maxsize=2)
        self.outbox = _FORK.Queue(maxsize=2)
        self.process = _FORK.Process(target=_parse_forever, args=(parser, self.inbox, self.outbox),
                                     name="jiliang-parse", daemon=True)

    def __enter__(self) -> _ParseProcess:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:  # every batch came back and the child was told to stop
            self.process.join(timeout=5)
        if self.process.is_alive():  # the caller stopped early (or the child hangs)
            self.process.kill()
        self.process.join()
        for q in (self.inbox, self.outbox):
            q.cancel_join_thread()  # batches still queued are dropped, not waited for
            q.close()

    def run(self, chunks: Iterator[list[bytes | str]]) -> Iterator[tuple[int, ParseResult]]:
        in_flight = 0
        for chunk in itertools.islice(chunks, 2):
            self.inbox.put(chunk)
            in_flight += 1
        while in_flight:
            item = self._next()
            in_flight -= 1
            chunk = next(chunks, [])  # batches are never empty
            if chunk:
                self.inbox.put(chunk)
                in_flight += 1
            yield item
        self.inbox.put(None)

    def _next(self) -> tuple[int, ParseResult]:
        while True:
            try:
                item = self.outbox.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"the parsing process ended unexpectedly (exit code "
                                       f"{self.process.exitcode})") from None
                continue
            if isinstance(item, BaseException):
                raise item
            result: tuple[int, ParseResult] = item
            return result


def _tune_sqlite() -> None:
    """A page cache large enough for the telemetry indexes (the default 2 MB makes each insert read pages)."""
    if not bulk.is_postgres():
        with connection.cursor() as cur:
            cur.execute("PRAGMA cache_size = -262144")  # 256 MB, for this connection
            # checkpoint the write-ahead log every 256 MB (at 4 KB pages) instead of every 4 MB: each batch
            # rewrites index pages all over the table, and copying them into the database after every
            # commit doubled the writes.  Commits stay as durable as before (WAL, synchronous=NORMAL).
            cur.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")


def _untune_sqlite() -> None:
    """Back to SQLite's default checkpoint interval, after a checkpoint of what the ingest wrote."""
    if not bulk.is_postgres():
        with connection.cursor() as cur:
            cur.execute("PRAGMA wal_autocheckpoint = 1000")
            if not connection.in_atomic_block:
                cur.execute("PRAGMA wal_checkpoint(PASSIVE)")


def ingest_lines(lines: Iterable[bytes | str], *, source: str, sender_org: int | None = None,
                 snapshot: tuple[dict[str, Device], dict[str, Place]] | None = None, batch_size: int = BATCH,
                 keep_rejections: int = 100) -> IngestReport:
    """Validate, store and quarantine NDJSON lines batch by batch; each batch commits on its own."""
    devices, places = snapshot if snapshot is not None else registry_snapshot()
    parser = BatchParser(devices=devices, places=places, sender_org=sender_org)
    report = IngestReport()
    _tune_sqlite()
    try:
        first = 1
        for count, result in _parsed(lines, parser, batch_size):
            first += count
            received = timezone.now()
            with transaction.atomic():
                new = 0
                for kind, rows in result.rows.items():
                    n = _store(kind, rows)
                    report.by_kind[kind] += n
                    new += n
                for kind, data in result.columns.items():
                    n = _store_columns(kind, data)
                    report.by_kind[kind] += n
                    new += n
                _quarantine(result, source, received)
            report.lines = first - 1
            report.accepted += new
            report.duplicates += result.accepted - new
            report.rejected += len(result.rejected)
            room = keep_rejections - len(report.rejections)
            report.rejections += [(r.line, r.field, r.reason) for r in result.rejected[:max(room, 0)]]
    finally:
        _untune_sqlite()
    return report
