"""The dashboard's due-for-rotation count: date arithmetic, which instruments count, and scope."""

from __future__ import annotations

import datetime as dt

import pytest

from jiliang.accounts.models import SystemPrincipal
from jiliang.analytics.selectors import add_years, dashboard_summary, due_soon, latest_start
from jiliang.registry import services
from tests.pages.data import FUTIAN, Registry, build_registry


def test_latest_start_is_the_exact_inverse_of_add_years() -> None:
    days = [dt.date(2019, 12, 1) + dt.timedelta(days=i) for i in range(0, 3 * 366 + 120)]
    for years in (4, 6, 10):
        for limit in (dt.date(2026, 2, 28), dt.date(2026, 3, 1), dt.date(2028, 2, 29), dt.date(2027, 12, 31)):
            cut = latest_start(limit, years)
            for d in days:
                assert (add_years(d, years) <= limit) == (d <= cut), (d, years, limit)


@pytest.fixture
def reg(db: None) -> Registry:
    return build_registry()


def test_counts_water_meter_past_its_service_life(reg: Registry) -> None:
    due = due_soon(principal=reg.users["admin"])
    assert (due.total, due.overdue) == (1, 1)
    assert due.by_type == {"water_meter": 1}


def test_window_edges(reg: Registry) -> None:
    install = reg.water_ft.install_date
    assert install is not None
    ends = add_years(install, 6)  # water meters: 6-year service life in the catalogue
    admin = reg.users["admin"]
    assert due_soon(principal=admin, today=ends - dt.timedelta(days=31), horizon_days=30).total == 0
    at_edge = due_soon(principal=admin, today=ends - dt.timedelta(days=30), horizon_days=30)
    assert (at_edge.total, at_edge.overdue) == (1, 0)
    on_the_day = due_soon(principal=admin, today=ends, horizon_days=30)
    assert (on_the_day.total, on_the_day.overdue) == (1, 0)
    after = due_soon(principal=admin, today=ends + dt.timedelta(days=1), horizon_days=30)
    assert (after.total, after.overdue) == (1, 1)


def test_periodic_types_and_retired_instruments_do_not_count(reg: Registry) -> None:
    admin = reg.users["admin"]
    far_future = dt.date.today() + dt.timedelta(days=20 * 366)
    assert due_soon(principal=admin, today=far_future).by_type == {"water_meter": 1}  # scales are periodic
    services.instrument_update(actor=SystemPrincipal("test"), instrument_id=reg.water_ft.pk, status="retired")
    assert due_soon(principal=admin).total == 0


def test_scope(reg: Registry) -> None:
    assert due_soon(principal=reg.users["futian"]).total == 1
    assert due_soon(principal=reg.users["market"]).total == 0  # the water meter belongs to the utility
    assert due_soon(principal=reg.users["public"]).total == 0


def test_summary_labels_follow_the_language(reg: Registry) -> None:
    zh = dashboard_summary(principal=reg.users["futian"])
    en = dashboard_summary(principal=reg.users["futian"], english=True)
    assert [b.label for b in zh.by_district] == ["福田区"] and [b.key for b in zh.by_district] == [FUTIAN]
    assert [b.label for b in en.by_district] == ["Futian"]
    assert {b.label for b in zh.by_type} == {"电子计价秤", "饮用冷水水表"}
    assert zh.total == en.total == 3


def test_recorded_validity_counts_for_every_type_and_overrides_the_install_date(reg: Registry) -> None:
    from jiliang.registry.models import Instrument

    admin = reg.users["admin"]
    today = dt.date(2026, 6, 1)
    scale = Instrument.objects.filter(instrument_type_id="scale").exclude(status="retired").first()
    assert scale is not None
    Instrument.objects.filter(pk=scale.pk).update(valid_until=today + dt.timedelta(days=10))
    due = due_soon(principal=admin, today=today, horizon_days=30)
    assert due.by_type.get("scale") == 1 and due.for_type("scale") == 1
    # a water meter verified again with a validity far ahead no longer counts by its install date
    Instrument.objects.filter(pk=reg.water_ft.pk).update(valid_until=today + dt.timedelta(days=900))
    assert "water_meter" not in due_soon(principal=admin, today=today, horizon_days=30).by_type


def test_dashboard_shows_open_alerts_only_to_those_who_handle_them(reg: Registry) -> None:
    from django.test import Client

    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.ingest import ingest_lines

    scale = reg.scale_ft.device_id
    line = (f'{{"kind":"scale.txn","device":"{scale}","ts":"2026-11-01T08:00:00+08:00","seq":1,"net_g":1000,'
            '"tare_g":0,"unit_price_fen_per_kg":1500,"amount_fen":1800}')
    ingest_lines([line.encode()], source="t")
    run_detectors()
    c = Client()
    c.force_login(reg.users["futian"])
    html = c.get("/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert 'id="stat-alerts">1<' in html
    c.force_login(reg.users["market"])
    assert 'id="stat-alerts"' not in c.get("/").content.decode()
