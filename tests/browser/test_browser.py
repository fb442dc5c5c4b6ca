"""The pages in a real headless Chromium: sign-in, dashboard charts, filtering, detail, the public QR page
and the language switch.  Screenshots land in test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from jiliang.registry.models import Instrument
from tests.pages.data import PASSWORD, Registry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page: Any, username: str = "reg_city") -> None:
    page.goto("/")
    assert "/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("form[action='/login/'] button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def wait_for_count(page: Any, text: str) -> None:
    """Wait until the result count says ``text`` (a locator wait: the page's CSP forbids eval)."""
    page.locator("#result-count", has_text=text).wait_for()


def no_console_errors(page: Any) -> None:
    errors = [e for e in page.console_errors if "favicon" not in e]
    assert not errors, errors


def test_sign_in_and_dashboard_charts(page: Any, registry: Registry, artifacts: Path) -> None:
    sign_in(page)
    page.wait_for_selector("#chart-by-type[data-ready=true] canvas")
    page.wait_for_selector("#chart-by-status[data-ready=true] canvas")
    page.wait_for_selector("#chart-by-district[data-ready=true] canvas")
    assert page.inner_text("#stat-total").strip() == "4"
    assert page.inner_text("#stat-due").strip() == "1"
    assert "概览" in page.inner_text("h1")
    page.wait_for_timeout(600)  # let the chart animation finish before the screenshot
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    no_console_errors(page)


def test_wrong_password_is_refused(page: Any, registry: Registry) -> None:
    page.goto("/login/")
    page.fill("#id_username", "reg_city")
    page.fill("#id_password", "not-the-password")
    page.click("form[action='/login/'] button[type=submit]")
    assert "用户名或密码不正确" in page.inner_text(".form-errors")


def test_list_filter_and_open_an_instrument(page: Any, registry: Registry) -> None:
    sign_in(page)
    page.click("nav.mainnav >> text=计量器具")
    page.wait_for_selector("#instrument-table")
    assert page.inner_text("#result-count").strip() == "共 4 台器具"
    # choosing a type refreshes the results in place (htmx: no page load) and records the filter in the address
    page.evaluate("window.jiliangMarker = 'same page'")
    page.select_option("#id_type", "water_meter")
    wait_for_count(page, "共 1 台")
    assert "type=water_meter" in page.url
    assert page.evaluate("window.jiliangMarker") == "same page"
    rows = page.locator("#instrument-table tbody tr")
    assert rows.count() == 1 and "WM-FT-0001" in rows.first.inner_text()
    # a text search combined with a status filter, submitted with the button
    page.select_option("#id_type", "")
    wait_for_count(page, "共 4 台")
    page.fill("#id_q", "SC-FT")
    page.select_option("#id_status", "suspended")
    wait_for_count(page, "共 1 台")
    page.click("#instrument-filters button[type=submit]")
    wait_for_count(page, "共 1 台")
    assert Instrument.objects.get(pk=registry.scale_ft_suspended.pk).status == "suspended"
    page.click("#instrument-table >> text=SC-FT-0002")
    page.wait_for_url(re.compile(rf"/instruments/{registry.scale_ft_suspended.pk}/$"))
    assert "SC-FT-0002" in page.inner_text("h1")
    assert "停用" in page.inner_text("#instrument-status")
    page.wait_for_selector(".label-preview img")
    assert page.eval_on_selector(".label-preview img", "img => img.naturalWidth") > 0
    no_console_errors(page)


def test_public_qr_page_signed_out_on_a_phone(chromium: Any, live_server: Any, registry: Registry,
                                              artifacts: Path) -> None:
    context = chromium.new_context(base_url=live_server.url, locale="zh-CN", viewport={"width": 390, "height": 844},
                                   device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        response = page.goto(f"/q/{registry.scale_ft.qr_token}/")
        assert response is not None and response.status == 200
        text = page.inner_text("body")
        expected_texts = ("电子计价秤", "SC-FT-0001", "福田农产品市场管理有限公司", "福华农贸市场", "在用",
                          "暂无检定记录")
        for expected in expected_texts:
            assert expected in text, expected
        assert "0755-88886666" not in text
        # nothing is wider than the phone's screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifacts / "public.png"), full_page=True)
    finally:
        context.close()


def test_language_switch_to_english(page: Any, registry: Registry, artifacts: Path) -> None:
    sign_in(page)
    page.click("form.langswitch button[value=en]")
    page.wait_for_selector("html[lang=en]")
    nav = page.inner_text("nav.mainnav")
    for word in ("Overview", "Instruments", "Organizations", "Places"):
        assert word in nav
    assert "计量器具" not in page.inner_text("body")
    page.click("nav.mainnav >> text=Instruments")
    page.wait_for_selector("#instrument-table")
    body = page.inner_text("body")
    assert "Price-computing scale" in body and "In service" in body and "4 instruments" in body
    page.screenshot(path=str(artifacts / "instruments-en.png"), full_page=True)
    page.click("form.langswitch button[value=zh-hans]")
    page.wait_for_selector("html[lang=zh-hans]")
    assert "计量器具" in page.inner_text("nav.mainnav")
