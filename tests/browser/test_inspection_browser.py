"""The inspector's task page in a real headless Chromium on a phone-sized viewport (390 x 844): sign in, open
检查任务 from the menu, open the task, record a failing spot-check with the touch form, and see the case
opened.  Screenshots: test-artifacts/inspection-task.png and inspection-case.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from jiliang.supervision.models import Case, InspectionTask
from tests.pages.data import FUTIAN, PASSWORD, SW_HASH, Registry
from tests.supervision.inspection_setup import drawn_plan, make_inspectors, make_institute
from tests.world import make_uscc

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def no_horizontal_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways ({width} px)"


def test_inspector_records_a_failing_spot_check_on_a_phone(
        chromium: Any, live_server: Any, registry: Registry, artifacts: Path) -> None:
    inspectors = make_inspectors(FUTIAN, 2, prefix="ft", password=PASSWORD)
    make_institute(FUTIAN, make_uscc(FUTIAN, 500, "12"), "福田区计量检定所")
    plan = drawn_plan(registry.users["futian"], FUTIAN, beacon="browser-beacon")
    task = InspectionTask.objects.get(plan=plan)
    assert task.inspector_ids == {u.pk for u in inspectors}
    inspector = inspectors[0]

    context = chromium.new_context(base_url=live_server.url, locale="zh-CN", viewport=PHONE, device_scale_factor=2,
                                   is_mobile=True, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/")
        page.fill("#id_username", inspector.username)
        page.fill("#id_password", PASSWORD)
        page.click("form[action='/login/'] button[type=submit]")
        page.wait_for_url(re.compile(r"/$"))

        page.goto("/tasks/")
        assert page.locator("#task-table tbody tr").count() == 1
        no_horizontal_scroll(page)
        page.click("a.task-link")
        page.wait_for_url(re.compile(rf"/tasks/{task.pk}/$"))
        assert "已分派" in page.inner_text("#task-status")
        card = page.locator("[data-device='SC-FT-0001']")
        assert card.count() == 1 and SW_HASH in card.inner_text()
        no_horizontal_scroll(page)

        # big touch targets: the radio labels and the submit button are at least 44 px high
        for selector in ("label:has(input[type=radio])", "button[type=submit]"):
            box = card.locator(selector).first.bounding_box()
            assert box is not None and box["height"] >= 44, (selector, box)
        submit = card.locator("button[type=submit]").bounding_box()
        assert submit is not None and submit["width"] >= 300  # full width on the phone

        prefix = f"#id_i{registry.scale_ft.pk}-"
        card.locator("label:has(input[value=yes])").first.tap()         # present
        page.fill(prefix + "sw_hash_shown", SW_HASH)
        page.fill(prefix + "load_1", "15000")
        page.fill(prefix + "error_1", "12")                               # beyond the MPE (7.5 g)
        page.screenshot(path=str(artifacts / "inspection-form.png"), full_page=True)
        card.locator("button[type=submit]").tap()
        page.wait_for_selector("#task-cases")

        assert "不合格，已立案并责令改正" in page.inner_text(".messages")
        case = Case.objects.get()
        assert case.task == task and case.entity == registry.market_ft and case.status == "open"
        assert "不合格" in page.inner_text(f"#instrument-{registry.scale_ft.pk} .finding-verdict")
        assert "检查中" in page.inner_text("#task-status")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts / "inspection-task.png"), full_page=True)

        page.click("#task-cases a.case-link")
        page.wait_for_url(re.compile(rf"/cases/{case.pk}/$"))
        assert "抽查检定不合格" in page.inner_text("#case-violations")
        assert "计量法" in page.inner_text("#legal-basis")
        assert case.deadline.isoformat() in page.inner_text("#case-deadline")
        no_horizontal_scroll(page)
        page.screenshot(path=str(artifacts / "inspection-case.png"), full_page=True)
        assert not [e for e in errors if "favicon" not in e], errors
    finally:
        context.close()
