"""Bulk-inserted rows must be indistinguishable from ORM-written ones (formats, ordering, ids)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from jiliang.core import bulk
from jiliang.core.models import ChangeLog

pytestmark = pytest.mark.django_db


def test_bulk_datetimes_compare_like_orm_ones() -> None:
    t0 = timezone.now().replace(microsecond=0)
    ChangeLog.objects.create(at=t0, action="create", app_label="x", model="y", object_id="1", object_repr="orm",
                             actor_label="t", request_id="r")
    ids = bulk.allocate_ids(ChangeLog, 2)
    bulk.insert_rows(ChangeLog, ("id", "at", "action", "app_label", "model", "object_id", "object_repr",
                                 "actor_label", "request_id"),
                     [[ids[0], t0 - dt.timedelta(seconds=1), "create", "x", "y", "2", "bulk-before", "t", "r"],
                      [ids[1], t0 + dt.timedelta(microseconds=500), "create", "x", "y", "3", "bulk-after", "t", "r"]])
    bulk.bump_sequence(ChangeLog)
    assert list(ChangeLog.objects.filter(at__gt=t0).values_list("object_repr", flat=True)) == ["bulk-after"]
    assert list(ChangeLog.objects.filter(at__lt=t0).values_list("object_repr", flat=True)) == ["bulk-before"]
    assert ChangeLog.objects.get(object_repr="bulk-after").at == t0 + dt.timedelta(microseconds=500)
    nxt = ChangeLog.objects.create(at=t0, action="create", app_label="x", model="y", object_id="4",
                                   object_repr="orm2", actor_label="t", request_id="r")
    assert nxt.pk > ids[1]


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1000])
def test_sqlite_multi_row_insert_stores_every_row_once(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sqlite_insert_columns`` packs rows into multi-row statements plus a remainder; with
    ``INSERT OR IGNORE`` a repeated row is skipped as one row at a time would be."""
    from django.db import connection

    if bulk.is_postgres():
        pytest.skip("SQLite's insert path (PostgreSQL copies)")
    monkeypatch.setattr(bulk, "SQLITE_ROWS_PER_STATEMENT", 256)
    table = ChangeLog._meta.db_table
    t0 = timezone.now().replace(microsecond=0)
    ids = bulk.allocate_ids(ChangeLog, n)
    when = connection.ops.adapt_datetimefield_value(t0)
    columns = [ids, [when] * n, ["create"] * n, ["x"] * n, ["y"] * n, [str(i) for i in range(n)],
               [f"row {i}" for i in range(n)], ["t"] * n, ["r"] * n]
    head = (f'INSERT OR IGNORE INTO "{table}" ("id", "at", "action", "app_label", "model", "object_id", '
            f'"object_repr", "actor_label", "request_id")')
    with connection.cursor() as cur:
        before = connection.connection.total_changes
        bulk.sqlite_insert_columns(cur, head, columns)
        assert connection.connection.total_changes - before == n
        # again, with one new row at the end: only that one is stored
        more = [[*col, extra] for col, extra in zip(columns, [ids[-1] + 1, when, "create", "x", "y", "new",
                                                              "row new", "t", "r"], strict=True)]
        before = connection.connection.total_changes
        bulk.sqlite_insert_columns(cur, head, more)
        assert connection.connection.total_changes - before == 1
    got = dict(ChangeLog.objects.filter(id__gte=ids[0]).values_list("id", "object_repr"))
    assert got == {**{i: f"row {k}" for k, i in enumerate(ids)}, ids[-1] + 1: "row new"}
