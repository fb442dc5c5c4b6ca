"""Fast bulk inserts: COPY on PostgreSQL, multi-row INSERT statements on SQLite, with primary keys allocated first.

Callers run inside ``transaction.atomic()``.  Ids are allocated up front so that change-log rows written in
the same transaction can name the objects they describe.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from django.db import connection, models


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


_RAW_ARRAY: list[type] = []
_SEQUENCES: dict[str, str] = {}


def raw_array_loader() -> type:
    """A psycopg loader handing back a binary array's bytes untouched (parsed by ``pg_array``)."""
    if not _RAW_ARRAY:
        from psycopg import pq
        from psycopg.adapt import Loader

        class RawArray(Loader):
            format = pq.Format.BINARY

            def load(self, data: Any) -> bytes:
                return bytes(data)

        _RAW_ARRAY.append(RawArray)
    return _RAW_ARRAY[0]


def pg_array(blob: bytes, count: int, dtype: str) -> npt.NDArray[Any]:
    """The values of a one-dimensional binary PostgreSQL array without NULLs: a 20-byte header (dimensions,
    null flag, element type, length, lower bound), then a 4-byte length and the value of each element."""
    ndim, has_null = int.from_bytes(blob[0:4], "big"), int.from_bytes(blob[4:8], "big")
    if ndim != 1 or has_null or int.from_bytes(blob[12:16], "big") != count:
        raise ValueError("unexpected array layout")
    return np.frombuffer(blob, offset=20, dtype=np.dtype([("l", ">i4"), ("v", dtype)]), count=count)["v"]


def allocate_id_array(model: type[models.Model], count: int) -> npt.NDArray[np.int64]:
    """Reserve ``count`` primary keys for ``model``, ascending, as an array.  Must run in the transaction
    that inserts them.  PostgreSQL: drawn from the table's sequence in one statement, returned as one binary
    array (fetching a row per id cost ~0.3 s per 100,000); SQLite: the next ``count`` -- the IMMEDIATE
    transaction holds the write lock, so max+1 cannot race, and reading sqlite_sequence as well keeps ids of
    deleted rows from being reused."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    table = model._meta.db_table
    pk = model._meta.pk.column
    if is_postgres():
        import psycopg

        if table not in _SEQUENCES:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, pk])
                _SEQUENCES[table] = cur.fetchone()[0]
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as raw:
            raw.adapters.register_loader(1016, raw_array_loader())  # int8[]
            raw.execute("SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)",
                        [_SEQUENCES[table], count], binary=True)
            row = raw.fetchone()
        if row is None or row[0] is None:
            raise RuntimeError(f"no ids drawn from {_SEQUENCES[table]}")
        return np.sort(pg_array(row[0], count, ">i8").astype(np.int64))
    with connection.cursor() as cur:
        cur.execute(f'SELECT COALESCE(MAX("{pk}"), 0) FROM "{table}"')  # noqa: S608 (names from model meta)
        top = cur.fetchone()[0]
        cur.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        row = cur.fetchone()
        if row and row[0] > top:
            top = row[0]
    return np.arange(top + 1, top + 1 + count, dtype=np.int64)


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """``allocate_id_array`` as a list of ints."""
    ids: list[int] = allocate_id_array(model, count).tolist()
    return ids


def lock_for_bulk_insert(model: type[models.Model]) -> None:
    """PostgreSQL: take the table in SHARE ROW EXCLUSIVE mode until the transaction ends -- other writers
    wait, readers do not.  A bulk import's existence checks then stay true until it commits, and
    ``allocate_block`` can reserve consecutive ids.  (SQLite's IMMEDIATE transaction already excludes
    other writers.)"""
    if is_postgres():
        with connection.cursor() as cur:
            cur.execute(f'LOCK TABLE "{model._meta.db_table}" IN SHARE ROW EXCLUSIVE MODE')


def allocate_block(model: type[models.Model], count: int) -> int:
    """Reserve ``count`` consecutive primary keys and return the first.  Call ``lock_for_bulk_insert``
    first, in the same transaction (nobody else can then draw from the table's sequence)."""
    if not is_postgres():
        ids = allocate_ids(model, count)
        return ids[0] if ids else 1
    table = model._meta.db_table
    with connection.cursor() as cur:
        cur.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, model._meta.pk.column])
        seq = cur.fetchone()[0]
        cur.execute("SELECT nextval(%s)", [seq])
        first = int(cur.fetchone()[0])
        if count > 1:
            cur.execute("SELECT setval(%s, %s)", [seq, first + count - 1])
        return first


class CopyWriter:
    """PostgreSQL: COPY fed from a second thread, so that the caller formats the next piece while the
    server stores the previous one (the thread waits on the socket without holding the interpreter lock).
    ``begin(model, columns)`` starts a COPY into a table (ending the previous one); ``write`` queues COPY
    text.  The caller must not use the connection until ``close``; ``close(abort=True)`` cancels, and the
    caller's transaction must then roll back."""

    _ABORT = object()

    def __init__(self, queue_size: int = 4) -> None:
        import queue
        import threading

        connection.ensure_connection()
        self._raw = connection.connection
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="jiliang-copy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._raw.cursor() as cur:
                copy_cm: Any = None
                copy: Any = None
                try:
                    while True:
                        item = self._queue.get()
                        if item is None or isinstance(item, _Begin):
                            if copy_cm is not None:
                                copy_cm.__exit__(None, None, None)
                                copy_cm = copy = None
                            if item is None:
                                break
                            copy_cm = cur.copy(item.sql)
                            copy = copy_cm.__enter__()
                        elif item is self._ABORT:
                            raise _CopyAborted
                        else:
                            copy.write(item)
                except BaseException as exc:
                    if copy_cm is not None:
                        copy_cm.__exit__(type(exc), exc, exc.__traceback__)
                    raise
        except _CopyAborted:
            pass
        except BaseException as exc:  # handed to the caller on its next write or close
            self._error = exc

    def _put(self, item: object) -> None:
        import queue

        while True:
            if self._error is not None or not self._thread.is_alive():
                raise self._error or RuntimeError("the COPY thread stopped")
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def begin(self, model: type[models.Model], columns: Sequence[str]) -> None:
        cols = ", ".join(f'"{c}"' for c in columns)
        self._put(_Begin(f'COPY "{model._meta.db_table}" ({cols}) FROM STDIN'))

    def write(self, text: str) -> None:
        self._put(text)

    def close(self, *, abort: bool = False) -> None:
        if self._thread.is_alive():
            # If the thread dies meanwhile, _put raises; its error is reported below.
            with contextlib.suppress(BaseException):
                self._put(self._ABORT if abort else None)
        self._thread.join()
        if self._error is not None and not abort:
            raise self._error


class _Begin:
    def __init__(self, sql: str) -> None:
        self.sql = sql


class _CopyAborted(Exception):
    pass


def existing_values(model: type[models.Model], column: str, values: Sequence[str],
                    where: dict[str, Any] | None = None) -> set[str]:
    """Which of ``values`` already occur in ``column`` (among the rows matching ``where``, if given).

    PostgreSQL gets one array parameter (``= ANY(%s)``) instead of statements with thousands of
    placeholders; SQLite gets ``IN`` lists of at most 900.  An empty table is not queried at all."""
    out: set[str] = set()
    if not values or not model._default_manager.exists():
        return out
    table = model._meta.db_table
    conds = "".join(f' AND "{k}" = %s' for k in (where or {}))
    extra = list((where or {}).values())
    unique = sorted(set(values))
    with connection.cursor() as cur:
        if is_postgres():
            cur.execute(f'SELECT "{column}" FROM "{table}" WHERE "{column}" = ANY(%s){conds}',  # noqa: S608
                        [unique, *extra])
            out.update(r[0] for r in cur.fetchall())
            return out
        for i in range(0, len(unique), 900):
            chunk = unique[i : i + 900]
            marks = ", ".join(["%s"] * len(chunk))
            cur.execute(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IN ({marks}){conds}',  # noqa: S608
                        [*chunk, *extra])
            out.update(r[0] for r in cur.fetchall())
    return out




def _sqlite_value(v: Any) -> Any:
    """Values as Django itself writes them to SQLite: datetimes naive UTC 'YYYY-MM-DD HH:MM:SS[.ffffff]'
    (so SQL comparisons against ORM-written rows order correctly), dates ISO, JSON as text."""
    if isinstance(v, dict | list):
        return orjson.dumps(v).decode()
    if isinstance(v, dt.datetime):
        return connection.ops.adapt_datetimefield_value(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


SQLITE_ROWS_PER_STATEMENT = 256


def sqlite_insert_columns(cursor: Any, head: str, columns: Sequence[Sequence[Any]]) -> None:
    """SQLite: run ``head`` (``INSERT [OR IGNORE] INTO "t" ("a", "b", …)``) over rows given column-wise, with
    up to ``SQLITE_ROWS_PER_STATEMENT`` rows in each statement's ``VALUES`` list.  One statement per row
    (plain ``executemany``) spent more time starting and ending statements -- and, on an AUTOINCREMENT
    table, reading and writing ``sqlite_sequence`` -- than inserting: ~2 × slower on the telemetry tables.
    ``cursor`` is Django's cursor (``%s`` placeholders)."""
    k = len(columns)
    n = len(columns[0]) if k else 0
    if not n:
        return
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per = max(1, min(SQLITE_ROWS_PER_STATEMENT, limit // k))
    grid = np.empty((n, k), dtype=object)
    for j, col in enumerate(columns):
        grid[:, j] = col
    row = "(" + ", ".join(["%s"] * k) + ")"
    full = n // per * per
    if full:
        cursor.executemany(f"{head} VALUES {', '.join([row] * per)}", grid[:full].reshape(-1, per * k).tolist())
    if full < n:
        cursor.executemany(f"{head} VALUES {row}", grid[full:].tolist())


# COPY text format: backslash, tab, newline and carriage return are escaped; None is \N.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(v: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    if v is None:
        return "\\N"
    if isinstance(v, str):
        return v.translate(_COPY_ESCAPES)
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict | list):
        return orjson.dumps(v).decode().translate(_COPY_ESCAPES)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return str(v).translate(_COPY_ESCAPES)


def insert_rows(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert raw rows (values in ``columns`` order, JSON fields as dict/list).  Returns the count.

    On PostgreSQL the rows are formatted as COPY text here and sent in 1 MB pieces: several times faster
    than adapting every value through the driver, which dominated large imports."""
    table = model._meta.db_table
    cols = ", ".join(f'"{c}"' for c in columns)
    n = 0
    with connection.cursor() as cur:
        if is_postgres():
            raw = cur.cursor  # psycopg 3 cursor underneath Django's wrapper
            with raw.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
                buf: list[str] = []
                size = 0
                for r in rows:
                    line = "\t".join([copy_text(v) for v in r])
                    buf.append(line)
                    size += len(line)
                    n += 1
                    if size > 1_000_000:
                        copy.write("\n".join(buf) + "\n")
                        buf, size = [], 0
                if buf:
                    copy.write("\n".join(buf) + "\n")
        else:
            head = f'INSERT INTO "{table}" ({cols})'
            batch: list[list[Any]] = []
            for r in rows:
                batch.append([_sqlite_value(v) for v in r])
                if len(batch) >= 5000:
                    sqlite_insert_columns(cur, head, list(zip(*batch, strict=True)))
                    n += len(batch)
                    batch = []
            if batch:
                sqlite_insert_columns(cur, head, list(zip(*batch, strict=True)))
                n += len(batch)
    return n


def copy_lines(model: type[models.Model], columns: Sequence[str], lines: Sequence[str]) -> int:
    """PostgreSQL only: COPY rows already formatted as COPY text lines (each ending in a newline), sent in
    pieces of about 1 MB so that the server parses while the next piece is joined."""
    table = model._meta.db_table
    cols = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cur, cur.cursor.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
        step = 4000
        for k in range(0, len(lines), step):
            copy.write("".join(lines[k: k + step]))
    return len(lines)


def bump_sequence(model: type[models.Model]) -> None:
    """After inserting explicit ids on SQLite, record the high-water mark in sqlite_sequence."""
    if is_postgres():
        return
    table = model._meta.db_table
    pk = model._meta.pk.column
    with connection.cursor() as cur:
        cur.execute(f'SELECT MAX("{pk}") FROM "{table}"')  # noqa: S608
        top = cur.fetchone()[0] or 0
        cur.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s AND seq < %s", [top, table, top])
        if cur.rowcount == 0:
            cur.execute("SELECT 1 FROM sqlite_sequence WHERE name = %s", [table])
            if cur.fetchone() is None:
                cur.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, top])


def compress_with_lz4(conn: Any, table: str, column: str) -> bool:
    """PostgreSQL 14+ built with lz4: compress a large text/JSON column with lz4 instead of the default pglz
    (several times faster to write; the values are unchanged).  For migrations (``conn`` is the schema
    editor's connection); False where it does not apply."""
    if conn.vendor != "postgresql" or conn.pg_version < 140000:
        return False
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")
        if not cur.fetchone():
            return False
        cur.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET COMPRESSION lz4')
    return True
