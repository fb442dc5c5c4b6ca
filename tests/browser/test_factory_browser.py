"""二检合一 in a real headless Chromium: a manufacturer uploads a spreadsheet with one bad row, sees the
row-level error, fixes the file and uploads it; the city regulator then sees the batch, its statistics and
the chart of batch means.  Screenshots: test-artifacts/factory-upload-error.png, factory-batches.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from jiliang.factory.models import FactoryUnit
from tests.browser.test_plan_browser import no_console_errors, sign_in
from tests.pages.data import Registry
from tests.pages.test_factory_pages import csv_bytes, row, setup_maker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_manufacturer_fixes_a_bad_row_and_the_regulator_sees_the_batch(
        chromium: Any, live_server: Any, page: Any, registry: Registry, artifacts: Path) -> None:
    setup_maker(registry)
    sign_in(page, "maker_u")
    page.click("nav.mainnav >> text=二检合一")
    page.wait_for_selector("#upload-form")

    rows = [row(registry, f"M{i:03d}", q3=0.1 * (i % 5)) for i in range(12)]
    bad = [*rows[:6], row(registry, "M006", size="DN80"), *rows[7:]]
    page.set_input_files("#upload-form input[type=file]", files=[
        {"name": "units.csv", "mimeType": "text/csv", "buffer": csv_bytes(bad)}])
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-problems")
    problem = page.locator("#upload-problems tbody tr")
    assert problem.count() == 1
    assert problem.get_attribute("data-row") == "8"  # header is line 1, the 7th unit is line 8
    assert "size" in problem.inner_text() and "outside the authorized scope" in problem.inner_text()
    assert FactoryUnit.objects.count() == 0
    page.screenshot(path=str(artifacts / "factory-upload-error.png"), full_page=True)

    page.set_input_files("#upload-form input[type=file]", files=[
        {"name": "units.csv", "mimeType": "text/csv", "buffer": csv_bytes(rows)}])
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("text=已上传 12 台出厂检定记录")
    assert FactoryUnit.objects.count() == 12
    no_console_errors(page)

    page.context.clear_cookies()
    sign_in(page, "reg_city")
    page.goto("/factory/")
    page.click("#batches-link")
    page.wait_for_url(re.compile(r"/factory/batches/$"))
    assert page.locator("#batch-table tr[data-batch=B1]").count() == 2  # Q1 and Q3
    q3 = page.locator("#batch-table tr[data-batch=B1][data-point=Q3]").inner_text()
    assert "12" in q3 and "0.175" in q3  # n and the mean of 0.0, 0.1, … 0.4, 0.0, … (12 units)
    page.wait_for_selector("#batch-chart[data-ready='1']")
    assert page.locator("#batch-chart svg").count() == 1
    page.screenshot(path=str(artifacts / "factory-batches.png"), full_page=True)
    no_console_errors(page)


def test_regulator_grants_an_authorization_and_the_public_list_shows_it(
        chromium: Any, live_server: Any, page: Any, registry: Registry, artifacts: Path) -> None:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.factory import services
    from jiliang.factory.models import Authorization
    from tests.pages.test_factory_pages import COND, SCOPE

    a = services.authorization_apply(actor=SystemPrincipal("t"), manufacturer_id=registry.maker.pk,
                                     conditions=COND, registered_metrologists=2, scope=SCOPE)
    sign_in(page, "reg_city")
    page.goto("/factory/")
    page.click("#authorizations-link")
    page.select_option("#auth-filters select[name=status]", "applied")
    page.click("#auth-filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=applied"))
    page.click(f"#auth-table tr[data-auth='{a.pk}'] a.auth-link")
    page.click("#action-assess button[data-event=assess]")
    page.wait_for_selector("#action-grant")
    assert page.locator("#action-assess").count() == 0  # offered only while the state machine allows it
    page.fill("#action-grant textarea[name=note]", "现场考核通过")
    page.click("#action-grant button[data-event=grant]")
    page.wait_for_selector("text=已完成：考核通过，授权")
    assert page.locator("#auth-status").inner_text() == "有效"
    a.refresh_from_db()
    assert a.status == "granted" and a.number and page.locator("#auth-number").inner_text() == a.number
    assert Authorization.objects.get(pk=a.pk).assessment_note == "现场考核通过"
    page.screenshot(path=str(artifacts / "factory-authorization-granted.png"), full_page=True)
    no_console_errors(page)

    page.context.clear_cookies()
    page.goto("/public/factory/")
    row = page.locator(f"#public-table tr[data-auth='{a.pk}']")
    assert registry.maker.name in row.inner_text() and a.number in row.inner_text()
    assert row.locator(".auth-status").inner_text() == "有效"
    no_console_errors(page)
