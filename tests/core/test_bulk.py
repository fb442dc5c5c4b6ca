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
