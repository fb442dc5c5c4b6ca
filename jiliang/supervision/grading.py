"""Columnar credit grading (信用评定): events and current grades read column-wise into NumPy arrays, scored
by :mod:`jiliang.engine.credit`, and only the changed grades written back in bulk.

Reading: on PostgreSQL the server packs each column set into a few large binary blobs (``string_agg`` of
``int8send`` … per block of a million rows) that NumPy reads in place, so 20 million events cost a handful
of round trips instead of 20 million rows through the driver (COPY TO STDOUT sends one message per row,
which the driver takes at about 2.6 µs each); on SQLite the rows are fetched in chunks of 100,000 straight
into structured arrays.  Writing: new grades by COPY (PostgreSQL) or ``executemany`` (SQLite), changed
grades by COPY into a temporary table and one ``UPDATE … FROM`` (PostgreSQL) or ``executemany``.

Every function here runs inside the caller's transaction (:func:`jiliang.supervision.services.credit_regrade`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import connection

from jiliang.core.bulk import allocate_block, bump_sequence, is_postgres
from jiliang.engine import credit
from jiliang.registry.models import OrganizationKind
from jiliang.supervision.models import CreditEvent, CreditGrade

BLOCK = 1_000_000  # rows per binary blob on PostgreSQL
FETCH = 100_000  # rows per fetch on SQLite

I64 = npt.NDArray[np.int64]


@dataclass
class EventColumns:
    """The credit events as of a date, column-wise: entity id, kind code (position in the configuration's
    event names), age in whole days; ``last_id`` is the highest event id read (the input's high-water mark)."""

    entity: I64
    code: npt.NDArray[np.int16]
    age: npt.NDArray[np.int32]
    last_id: int

    def __len__(self) -> int:
        return int(self.entity.size)


@dataclass
class GradeColumns:
    """The stored grades, column-wise (grade as a position in :data:`credit.GRADES`)."""

    id: I64
    entity: I64
    score: npt.NDArray[np.float64]
    grade: npt.NDArray[np.int8]
    events: I64
    config_version: I64


def _table(model: Any) -> str:
    return str(model._meta.db_table)


def _kind_case(kinds: Sequence[str], column: str = "kind") -> tuple[str, list[Any]]:
    whens = " ".join("WHEN %s THEN " + str(i) for i in range(len(kinds)))
    return f"CASE {column} {whens} ELSE -1 END", list(kinds)


def _pg_blobs(exprs: str, from_where: str, params: list[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """PostgreSQL: ``exprs`` (a ``||``-joined list of ``*send`` calls, one fixed-size record per row) packed
    by the server into one blob per ``BLOCK`` ids, read by NumPy without a Python object per row."""
    sql = f"SELECT string_agg({exprs}, ''::bytea) FROM {from_where} GROUP BY id / {BLOCK}"  # noqa: S608
    import psycopg

    connection.ensure_connection()
    # Django's cursors bind client-side, which cannot return binary results: a plain psycopg cursor on the
    # same connection (so in the caller's transaction).
    with psycopg.Cursor(connection.connection) as raw:
        raw.execute(sql, params, binary=True)
        parts = [np.frombuffer(r[0], dtype=dtype) for r in raw.fetchall() if r[0] is not None]
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts)


def _sqlite_rows(sql: str, params: list[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    parts = []
    with connection.cursor() as cur:
        cur.execute(sql, params)
        while True:
            chunk = cur.fetchmany(FETCH)
            if not chunk:
                break
            parts.append(np.array(chunk, dtype=dtype))
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts)


def load_events(*, today: dt.date, kinds: Sequence[str]) -> EventColumns:
    """Every event that occurred on or before ``today`` (later ones have not happened as of that date), up
    to the highest event id at the start of the read.  An event whose kind is not in ``kinds`` is refused."""
    table = _table(CreditEvent)
    with connection.cursor() as cur:
        cur.execute(f'SELECT COALESCE(MAX("id"), 0) FROM "{table}"')  # noqa: S608 (name from model meta)
        last_id = int(cur.fetchone()[0])
    case, case_params = _kind_case(kinds)
    if is_postgres():
        dtype = np.dtype([("e", ">i8"), ("k", ">i2"), ("a", ">i4")])
        arr = _pg_blobs(f"int8send(entity_id) || int2send(({case})::int2) || int4send((%s::date - occurred_on)::int4)",
                        f'"{table}" WHERE id <= %s AND occurred_on <= %s', [*case_params, today, last_id, today],
                        dtype)
    else:
        dtype = np.dtype([("e", "<i8"), ("k", "<i2"), ("a", "<i4")])
        arr = _sqlite_rows(f"SELECT entity_id, {case}, CAST(julianday(%s) - julianday(occurred_on) AS INTEGER) "  # noqa: S608
                           f'FROM "{table}" WHERE id <= %s AND occurred_on <= %s',
                           [*case_params, today.isoformat(), last_id, today.isoformat()], dtype)
    code = arr["k"].astype(np.int16)
    if code.size and int(code.min()) < 0:
        bad = CreditEvent.objects.filter(id__lte=last_id).exclude(kind__in=list(kinds)).values_list("kind", flat=True)
        raise credit.CreditConfigError(f"events of unknown kind {sorted(set(bad))!r} in the credit files")
    return EventColumns(entity=arr["e"].astype(np.int64), code=code, age=arr["a"].astype(np.int32), last_id=last_id)


def graded_kind_entities(kinds: Sequence[str]) -> I64:
    """Ids of organisations having one of the market-facing ``kinds`` (graded even without events)."""
    table = _table(OrganizationKind)
    marks = ", ".join(["%s"] * len(kinds))
    if is_postgres():
        arr = _pg_blobs("int8send(organization_id)", f'"{table}" WHERE kind IN ({marks})', list(kinds),
                        np.dtype(">i8"))
        return np.unique(arr.astype(np.int64))
    arr = _sqlite_rows(f'SELECT organization_id FROM "{table}" WHERE kind IN ({marks})',  # noqa: S608
                       list(kinds), np.dtype([("o", "<i8")]))
    return np.unique(arr["o"].astype(np.int64))


def load_grades() -> GradeColumns:
    table = _table(CreditGrade)
    grade_case, grade_params = _kind_case(credit.GRADES, "grade")
    if is_postgres():
        dtype = np.dtype([("i", ">i8"), ("e", ">i8"), ("s", ">f8"), ("g", ">i2"), ("n", ">i8"), ("v", ">i8")])
        arr = _pg_blobs(f"int8send(id::int8) || int8send(entity_id) || float8send(score) || "
                        f"int2send(({grade_case})::int2) || int8send(events::int8) || int8send(config_version::int8)",
                        f'"{table}"', grade_params, dtype)
    else:
        dtype = np.dtype([("i", "<i8"), ("e", "<i8"), ("s", "<f8"), ("g", "<i2"), ("n", "<i8"), ("v", "<i8")])
        arr = _sqlite_rows(f'SELECT id, entity_id, score, {grade_case}, events, config_version FROM "{table}"',  # noqa: S608
                           grade_params, dtype)
    order = np.argsort(arr["e"], kind="stable")
    arr = arr[order]
    return GradeColumns(id=arr["i"].astype(np.int64), entity=arr["e"].astype(np.int64),
                        score=arr["s"].astype(np.float64), grade=arr["g"].astype(np.int8),
                        events=arr["n"].astype(np.int64), config_version=arr["v"].astype(np.int64))


def positions(sorted_ids: I64, values: I64) -> npt.NDArray[np.intp]:
    """Position of each value in ``sorted_ids`` (every value must occur): a look-up table when the ids are
    dense enough, binary search otherwise."""
    if not sorted_ids.size:
        return np.empty(0, dtype=np.intp)
    top = int(sorted_ids[-1])
    if top <= 8 * sorted_ids.size + 1_000_000:
        lut = np.full(top + 1, -1, dtype=np.intp)
        lut[sorted_ids] = np.arange(sorted_ids.size, dtype=np.intp)
        out: npt.NDArray[np.intp] = lut[values]
        return out
    return np.searchsorted(sorted_ids, values).astype(np.intp)


@dataclass
class Scored:
    """The outcome of scoring: per graded entity (ascending id) its score, grade code and event count."""

    ids: I64
    score: npt.NDArray[np.float64]
    grade: npt.NDArray[np.int8]
    events: I64


def score_all(cfg: credit.CreditConfig, ev: EventColumns, kind_entities: I64) -> Scored:
    """Score every entity that has a graded kind or any event (vectorised)."""
    top = max(int(ev.entity.max()) if ev.entity.size else 0, int(kind_entities.max()) if kind_entities.size else 0)
    if top <= 8 * (ev.entity.size + kind_entities.size) + 1_000_000:  # dense ids: mark, no sort
        present = np.zeros(top + 1, dtype=bool)
        present[ev.entity] = True
        present[kind_entities] = True
        ids = np.flatnonzero(present).astype(np.int64)
    else:
        ids = np.union1d(kind_entities, np.unique(ev.entity)).astype(np.int64)
    pos = positions(ids, ev.entity)
    s = credit.scores(cfg, n_entities=int(ids.size), entity=pos, event=ev.code, age_days=ev.age)
    counts = np.bincount(pos, minlength=ids.size).astype(np.int64) if ids.size else np.empty(0, np.int64)
    return Scored(ids=ids, score=s, grade=credit.grade_codes(cfg, s), events=counts)


# ------------------------------------------------------------------------------------------------ writing

_GRADE_COLUMNS = ("entity_id", "score", "grade", "events", "computed_at", "config_version")


def _copy_lines(rows: Sequence[str], sql: str) -> None:
    with connection.cursor() as cur, cur.cursor.copy(sql) as copy:
        step = 20_000
        for k in range(0, len(rows), step):
            copy.write("".join(rows[k: k + step]))


def _lines(ids: I64 | None, entity: I64, score: npt.NDArray[np.float64], grade: npt.NDArray[np.int8], events: I64,
           now: dt.datetime, version: int) -> list[str]:
    """COPY text lines (``_GRADE_COLUMNS`` order); ``repr`` of a float round-trips exactly."""
    at = now.isoformat()
    letters = credit.GRADES
    lines = [f"{e}\t{s!r}\t{letters[g]}\t{n}\t{at}\t{version}\n"
             for e, s, g, n in zip(entity.tolist(), score.tolist(), grade.tolist(), events.tolist(), strict=True)]
    if ids is not None:
        lines = [f"{i}\t{line}" for i, line in zip(ids.tolist(), lines, strict=True)]
    return lines


def insert_grades(entity: I64, score: npt.NDArray[np.float64], grade: npt.NDArray[np.int8], events: I64,
                  now: dt.datetime, version: int) -> I64:
    """Insert new grades with ids reserved up front (the caller holds the table lock,
    :func:`jiliang.core.bulk.lock_for_bulk_insert`); returns the ids, in the order given."""
    if not entity.size:
        return np.empty(0, dtype=np.int64)
    table = _table(CreditGrade)
    ids = np.arange(entity.size, dtype=np.int64) + allocate_block(CreditGrade, int(entity.size))
    cols = ", ".join(f'"{c}"' for c in ("id", *_GRADE_COLUMNS))
    if is_postgres():
        _copy_lines(_lines(ids, entity, score, grade, events, now, version), f'COPY "{table}" ({cols}) FROM STDIN')
        return ids
    at = connection.ops.adapt_datetimefield_value(now)
    letters = credit.GRADES
    rows = [(i, e, s, letters[g], n, at, version)
            for i, e, s, g, n in zip(ids.tolist(), entity.tolist(), score.tolist(), grade.tolist(), events.tolist(),
                                     strict=True)]
    with connection.cursor() as cur:
        cur.executemany(f'INSERT INTO "{table}" ({cols}) VALUES (%s, %s, %s, %s, %s, %s, %s)', rows)  # noqa: S608
    bump_sequence(CreditGrade)
    return ids


def update_grades(entity: I64, score: npt.NDArray[np.float64], grade: npt.NDArray[np.int8], events: I64,
                  now: dt.datetime, version: int) -> None:
    table = _table(CreditGrade)
    sets = "score = t.score, grade = t.grade, events = t.events, computed_at = t.computed_at, " \
           "config_version = t.config_version"
    if not entity.size:
        return
    if is_postgres():
        with connection.cursor() as cur:
            cur.execute(f'CREATE TEMPORARY TABLE credit_grade_new (LIKE "{table}" INCLUDING DEFAULTS) ON COMMIT DROP')
            cur.execute("ALTER TABLE credit_grade_new DROP COLUMN id")
        cols = ", ".join(f'"{c}"' for c in _GRADE_COLUMNS)
        _copy_lines(_lines(None, entity, score, grade, events, now, version),
                    f"COPY credit_grade_new ({cols}) FROM STDIN")
        with connection.cursor() as cur:
            cur.execute(f'UPDATE "{table}" AS g SET {sets} FROM credit_grade_new AS t '  # noqa: S608
                        "WHERE g.entity_id = t.entity_id")
            cur.execute("DROP TABLE credit_grade_new")
        return
    at = connection.ops.adapt_datetimefield_value(now)
    letters = credit.GRADES
    rows = [(s, letters[g], n, at, version, e)
            for e, s, g, n in zip(entity.tolist(), score.tolist(), grade.tolist(), events.tolist(), strict=True)]
    with connection.cursor() as cur:
        cur.executemany(f'UPDATE "{table}" SET score = %s, grade = %s, events = %s, computed_at = %s, '  # noqa: S608
                        "config_version = %s WHERE entity_id = %s", rows)
