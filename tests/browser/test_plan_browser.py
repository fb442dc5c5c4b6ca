"""The inspection-plan pages in a real headless Chromium: the city regulator opens 抽查计划 from the menu,
creates a plan, commits, enters a beacon, draws and publishes; a signed-out visitor then sees the targets
on the public page.  Screenshots: test-artifacts/plan.png (the published plan) and plan-public.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from jiliang.registry.models import Organization
from jiliang.supervision.models import InspectionPlan
from tests.pages.data import MARKET_FT, MARKET_LH, PASSWORD, Registry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BEACON = "2026-11-23 国家授时中心随机数 5c1e07b9"


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


def test_city_regulator_runs_a_plan_and_the_public_page_shows_the_targets(
        chromium: Any, live_server: Any, page: Any, registry: Registry, artifacts: Path) -> None:
    page.on("dialog", lambda dialog: dialog.accept())  # the commit and publish buttons ask to confirm
    sign_in(page, "reg_city")
    page.click("nav.mainnav >> text=抽查计划")
    page.wait_for_selector("#plans-empty")

    # 新建: the form starts with the default shares 5/20/60/100 %
    assert [page.input_value(f"#id_share_{g}") for g in "ABCD"] == ["5", "20", "60", "100"]
    page.fill("#id_name", "2026年第四季度电子计价秤双随机抽查")
    page.select_option("#id_region", "440300")
    page.check("#id_instrument_types input[value=scale]")
    page.screenshot(path=str(artifacts / "plan-new.png"), full_page=True)
    page.click("#plan-create-form button[type=submit]")
    page.wait_for_url(re.compile(r"/plans/\d+/$"))
    plan = InspectionPlan.objects.get()
    assert "草稿" in page.inner_text("#plan-status")
    assert page.get_attribute("#plan-steps [data-step=draft]", "data-state") == "current"

    # 承诺: the frame (both markets' entities own in-service scales) is frozen
    page.click("#commit-form button[type=submit]")
    page.wait_for_selector("#commitment")
    plan.refresh_from_db()
    assert plan.status == "committed"
    assert "2 个市场主体" in page.inner_text("#frame-size")
    assert page.inner_text("#frame-hash").strip() == plan.frame_hash
    assert "信标值须在承诺公开之后确定，例如国家授时中心随机数或当日公开数据的摘要" in page.inner_text("#draw-form")
    assert plan.secret_hex not in page.content()
    page.screenshot(path=str(artifacts / "plan-committed.png"), full_page=True)

    # 抽取: with grade B (never graded) at 20 %, one of the two entities is drawn
    page.fill("#id_beacon", BEACON)
    page.click("#draw-form button[type=submit]")
    page.wait_for_selector("#targets")
    plan.refresh_from_db()
    assert plan.status == "drawn" and len(plan.selected) == 1
    target = Organization.objects.get(uscc=plan.selected[0])
    assert target.uscc in (MARKET_FT, MARKET_LH)
    assert page.locator("#target-table tbody tr").count() == 1
    assert target.name in page.inner_text("#target-table")
    assert page.locator("#frame-table tr.is-drawn mark").inner_text() == target.name
    assert plan.secret_hex not in page.content()

    # 公开: the secret, the seed, the bundle link and how to verify appear
    page.click("#publish-form button[type=submit]")
    page.wait_for_selector("#publication")
    plan.refresh_from_db()
    assert plan.status == "published"
    assert page.inner_text("#secret").strip() == plan.secret_hex
    assert f"jiliang draw verify {plan.pk}" in page.inner_text("#verify-help")
    assert page.get_attribute("#plan-steps [data-step=published]", "data-state") == "current"
    page.screenshot(path=str(artifacts / "plan.png"), full_page=True)
    no_console_errors(page)

    # the public page, signed out: the targets and the commitment, no sign-in needed
    visitor = chromium.new_context(base_url=live_server.url, locale="zh-CN", viewport={"width": 390, "height": 844},
                                   device_scale_factor=2, is_mobile=True, has_touch=True)
    public = visitor.new_page()
    errors: list[str] = []
    public.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        response = public.goto(f"/public/plans/{plan.pk}/")
        assert response is not None and response.status == 200
        assert public.locator("#target-table tbody tr").count() == 1
        assert target.name in public.inner_text("#target-table") and target.uscc in public.inner_text("#target-table")
        assert BEACON in public.inner_text("#beacon") and plan.frame_hash in public.inner_text("#frame-hash")
        assert "jiliang draw verify" in public.inner_text("#verify-help")
        assert public.evaluate("document.documentElement.scrollWidth") <= 390
        bundle = public.request.get(f"/api/v1/public/plans/{plan.pk}/bundle").json()
        assert bundle["selected"] == plan.selected and bundle["beacon"] == BEACON
        public.screenshot(path=str(artifacts / "plan-public.png"), full_page=True)
        assert not [e for e in errors if "favicon" not in e], errors
    finally:
        visitor.close()
