"""The alert pages in a real headless Chromium: a regulator opens the alerts list from the menu, opens an
alert, sees its evidence and the telemetry chart drawn, and confirms it.  Screenshot: test-artifacts/alert.png."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from jiliang.monitoring.detection import run_detectors
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert
from tests.pages.data import PASSWORD, Registry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page: Any, username: str) -> None:
    page.goto("/")
    assert "/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("form[action='/login/'] button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def no_console_errors(page: Any) -> None:
    errors = [e for e in page.console_errors if "favicon" not in e]
    assert not errors, errors


def make_scale_alert() -> Alert:
    """A day of sales at 福华农贸市场's scale SC-FT-0001; now and then it charges more than price × weight."""
    lines = []
    for seq in range(1, 121):
        net_g = 300 + (seq * 137) % 1700
        price = (1200, 1800, 2600, 900)[seq % 4]
        amount = round(net_g * price / 1000) + (150 if seq % 23 == 0 else 0)
        hh, mm = divmod(6 * 60 + seq * 6, 60)
        lines.append(json.dumps({"kind": "scale.txn", "device": "SC-FT-0001",
                                 "ts": f"2026-11-01T{hh:02d}:{mm:02d}:00+08:00", "seq": seq, "net_g": net_g,
                                 "tare_g": 0, "unit_price_fen_per_kg": price, "amount_fen": amount}).encode())
    assert ingest_lines(lines, source="browser-test").accepted == 120
    run_detectors()
    return Alert.objects.get(detector="scale.amount_mismatch")


def test_regulator_opens_an_alert_sees_the_chart_and_confirms_it(page: Any, registry: Registry,
                                                                 artifacts: Path) -> None:
    alert = make_scale_alert()
    sign_in(page, "reg_futian")
    page.click("nav.mainnav >> text=预警")
    page.wait_for_selector("#alert-table")
    assert page.inner_text("#result-count").strip() == "共 1 条预警"
    row = page.locator(f"#alert-table tbody tr[data-alert='{alert.pk}']")
    assert "SC-FT-0001" in row.inner_text() and "新预警" in row.inner_text()
    page.screenshot(path=str(artifacts / "alerts.png"), full_page=True)
    # a filter refreshes the results in place (htmx) and the empty state says so in Chinese
    page.select_option("#id_status", "dismissed")
    page.locator("#result-count", has_text="共 0 条预警").wait_for()
    assert "没有符合条件的预警" in page.inner_text("#alerts-empty") and "status=dismissed" in page.url
    page.select_option("#id_status", "")
    page.locator("#result-count", has_text="共 1 条预警").wait_for()
    row.locator("a.alert-link").click()
    page.wait_for_url(re.compile(rf"/alerts/{alert.pk}/$"))
    assert "计价金额与单价×重量不符" in page.inner_text("h1")
    # the evidence table and the chart, drawn by alerts.js into a canvas
    assert "金额不符的交易（示例）" in page.inner_text("#evidence")
    page.wait_for_selector("#alert-chart[data-ready=true] canvas")
    box = page.locator("#alert-chart canvas").first.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 200
    # dismissing without a reason is refused in the form
    page.check("#decision-form input[value=dismissed]")
    page.click("#decision-form button[type=submit]")
    page.wait_for_selector("#form-errors")
    assert "排除预警必须填写理由" in page.inner_text("#decision")
    page.wait_for_selector("#alert-chart[data-ready=true] canvas")
    page.wait_for_timeout(400)
    page.screenshot(path=str(artifacts / "alert-decision.png"), full_page=True)
    assert Alert.objects.get(pk=alert.pk).status == "new"
    # confirm it
    page.check("#decision-form input[value=confirmed]")
    page.fill("#id_reason", "复秤核实：多收 1.50 元，已通知经营者")
    page.click("#decision-form button[type=submit]")
    page.locator("#alert-status", has_text="已确认").wait_for()
    assert "已更新为“已确认”" in page.inner_text(".messages")
    assert "复秤核实" in page.inner_text("#alert-reason")
    assert "已确认" in page.inner_text("#history")
    a = Alert.objects.get(pk=alert.pk)
    assert a.status == "confirmed" and a.decided_by == "reg_futian"
    page.wait_for_selector("#alert-chart[data-ready=true] canvas")
    page.wait_for_timeout(400)
    page.screenshot(path=str(artifacts / "alert.png"), full_page=True)
    no_console_errors(page)
