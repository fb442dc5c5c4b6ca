"""The inspection pages (检查任务, 案件, 利益冲突申报, 检查结果公开) through Django's test client, with the data
made the way production makes it (services): a Futian plan drawn over scales gives 福田农产品市场管理有限公司
one task with two Futian inspectors; the phone form records findings; a failing one opens a case."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from jiliang.accounts.models import User
from jiliang.supervision.models import Case, ConflictDeclaration, InspectionPlan, InspectionTask
from jiliang.supervision.services import finding_record, plan_publish, task_complete
from tests.pages.data import FUTIAN, MARKET_FT, PRIVATE_PHONE, SW_HASH, Registry
from tests.supervision.inspection_setup import drawn_plan, make_inspectors, make_institute
from tests.world import make_uscc

pytestmark = pytest.mark.django_db

TASKS = reverse("supervision:task_list")
CASES = reverse("supervision:case_list")
CONFLICTS = reverse("supervision:conflict_list")


@pytest.fixture
def setup(registry: Registry) -> dict[str, Any]:
    inspectors = make_inspectors(FUTIAN, 2, prefix="ft")
    other = make_inspectors(FUTIAN, 1, prefix="other")[0]
    make_institute(FUTIAN, make_uscc(FUTIAN, 500, "12"), "福田区计量检定所")
    plan = drawn_plan(registry.users["futian"], FUTIAN, beacon="page-beacon")
    task = InspectionTask.objects.get(plan=plan)
    assigned = [u for u in (*inspectors, other) if u.pk in task.inspector_ids]
    outsider = next(u for u in (*inspectors, other) if u.pk not in task.inspector_ids)
    return {"plan": plan, "task": task, "inspector": assigned[0], "partner": assigned[1], "outsider": outsider}


def login(user: Any) -> Client:
    c = Client()
    c.force_login(user)
    return c


def task_url(task: InspectionTask) -> str:
    return reverse("supervision:task_detail", args=[task.pk])


def finding_url(task: InspectionTask, inst: Any) -> str:
    return reverse("supervision:finding_create", args=[task.pk, inst.pk])


def form_data(inst: Any, **fields: str) -> dict[str, str]:
    data = {"instrument_id": str(inst.pk), "present": "yes", "seal_intact": "yes", "sw_hash_shown": "",
            "load_1": "", "error_1": "", "load_2": "", "error_2": "", "load_3": "", "error_3": "", "note": ""}
    data.update(fields)
    return {f"i{inst.pk}-{k}": v for k, v in data.items()}


def nav(body: str) -> str:
    start = body.index('class="mainnav"')
    return body[start:body.index("</nav>", start)]


def test_the_assigned_inspector_sees_the_task_and_the_phone_form(registry: Registry, setup: dict[str, Any]) -> None:
    task, inspector = setup["task"], setup["inspector"]
    c = login(inspector)
    listing = c.get(TASKS).content.decode()
    assert f'href="{TASKS}"' in nav(listing) and f'href="{CASES}"' in nav(listing)
    assert registry.market_ft.name in listing and "共 1 个检查任务" in listing
    body = c.get(task_url(task)).content.decode()
    assert 'name="viewport"' in body and "supervision/inspection.css" in body
    assert body.count('class="finding-form"') == 1  # SC-FT-0001 only: SC-FT-0002 is suspended
    assert 'data-device="SC-FT-0001"' in body and "SC-FT-0002" not in body
    assert SW_HASH in body  # the filed checksum to compare with
    assert 'inputmode="decimal"' in body and 'type="radio"' in body and "btn-touch" in body
    assert inspector.username in body and setup["partner"].username in body


@pytest.mark.parametrize("who", ["outsider", "market", "public"])
def test_others_do_not_see_an_open_task(registry: Registry, setup: dict[str, Any], who: str) -> None:
    user = setup["outsider"] if who == "outsider" else registry.users[who]
    c = login(user)
    assert c.get(task_url(setup["task"])).status_code == 404
    body = c.get(TASKS).content.decode()
    assert 'id="tasks-empty"' in body and 'id="task-table"' not in body and "task-link" not in body


def test_the_regulator_views_without_a_form_and_cannot_post(registry: Registry, setup: dict[str, Any]) -> None:
    task = setup["task"]
    c = login(registry.users["futian"])
    body = c.get(task_url(task)).content.decode()
    assert 'class="finding-form"' not in body and "尚未检查" in body and 'id="complete-form"' not in body
    r = c.post(finding_url(task, registry.scale_ft), form_data(registry.scale_ft))
    assert r.status_code == 403 and not task.findings.exists()


def test_a_failing_spot_check_opens_a_case_shown_on_the_task_and_case_pages(
        registry: Registry, setup: dict[str, Any]) -> None:
    task, inspector = setup["task"], setup["inspector"]
    c = login(inspector)
    r = c.post(finding_url(task, registry.scale_ft),
               form_data(registry.scale_ft, load_1="15000", error_1="12", sw_hash_shown=SW_HASH.upper()))
    assert r.status_code == 302 and r["Location"].endswith(f"#instrument-{registry.scale_ft.pk}")
    case = Case.objects.get()
    finding = case.finding
    assert finding.sw_match is True and finding.verification is not None and not finding.verification.conforming
    body = c.get(task_url(task)).content.decode()
    assert "不合格，已立案并责令改正" in body
    assert reverse("supervision:case_detail", args=[case.pk]) in body
    assert 'class="finding-form"' not in body and "检查中" in body
    detail = c.get(reverse("supervision:case_detail", args=[case.pk])).content.decode()
    assert "《中华人民共和国计量法》第九条" in detail and "责令立即停止使用该计量器具" in detail
    assert 'id="rectify-form"' in detail and "整改完成，结案" in detail
    listing = c.get(CASES).content.decode()
    assert registry.market_ft.name in listing and "抽查检定不合格" in listing


def test_form_errors_are_shown_per_field(registry: Registry, setup: dict[str, Any]) -> None:
    task = setup["task"]
    c = login(setup["inspector"])
    r = c.post(finding_url(task, registry.scale_ft), form_data(registry.scale_ft, load_1="15000"))
    assert r.status_code == 400 and "载荷和示值误差需同时填写" in r.content.decode()
    r = c.post(finding_url(task, registry.scale_ft), form_data(registry.scale_ft, present="no", seal_intact="no"))
    assert r.status_code == 400 and "器具不在场时不能填写检查结果" in r.content.decode()
    assert not task.findings.exists()


def test_completing_the_task_then_the_entity_sees_the_result(registry: Registry, setup: dict[str, Any]) -> None:
    task = setup["task"]
    c = login(setup["partner"])
    r = c.post(reverse("supervision:task_complete", args=[task.pk]), {"summary": ""}, follow=True)
    assert "还有器具未记录检查结果" in r.content.decode()
    c.post(finding_url(task, registry.scale_ft), form_data(registry.scale_ft, load_1="2500", error_1="2"))
    r = c.post(reverse("supervision:task_complete", args=[task.pk]), {"summary": "秤准确"}, follow=True)
    assert "检查任务已完成" in r.content.decode()
    task.refresh_from_db()
    assert task.status == "completed" and task.conclusion == "conforming"
    market = login(registry.users["market"])
    body = market.get(task_url(task)).content.decode()
    assert "未发现问题" in body and "秤准确" in body and 'class="finding-form"' not in body


def test_the_entity_reports_the_rectification_and_the_regulator_closes(
        registry: Registry, setup: dict[str, Any]) -> None:
    task = setup["task"]
    finding_record(actor=setup["inspector"], task_id=task.pk, instrument_id=registry.scale_ft.pk, present=True,
                   seal_intact=False)
    case = Case.objects.get()
    url = reverse("supervision:case_rectify", args=[case.pk])
    market = login(registry.users["market"])
    assert f'href="{CASES}"' in nav(market.get(CASES).content.decode())
    r = market.post(url, {"note": ""})
    assert r.status_code == 400
    r = market.post(url, {"note": "已重新加封并送检"}, follow=True)
    assert "等待监管人员确认" in r.content.decode()
    case.refresh_from_db()
    assert case.status == "rectified"
    assert login(registry.users["public"]).post(url, {"note": "x"}).status_code == 404
    r = login(registry.users["futian"]).post(url, {"note": "复查合格"}, follow=True)
    assert "案件已结案" in r.content.decode()
    case.refresh_from_db()
    assert case.status == "closed"


def test_conflict_declarations(registry: Registry, setup: dict[str, Any]) -> None:
    insp = setup["outsider"]
    c = login(insp)
    assert 'id="conflicts-empty"' in c.get(CONFLICTS).content.decode()
    r = c.post(CONFLICTS, {"organization": "9144030000000000XX", "reason": "亲属"})
    assert r.status_code == 400 and "没有这个统一社会信用代码的单位" in r.content.decode()
    r = c.post(CONFLICTS, {"organization": MARKET_FT.lower(), "reason": "配偶在该公司任职"}, follow=True)
    assert "已申报利益冲突" in r.content.decode()
    assert ConflictDeclaration.objects.filter(inspector=insp, organization=registry.market_ft).exists()
    reg = login(registry.users["futian"])
    body = reg.get(CONFLICTS).content.decode()
    assert "配偶在该公司任职" in body and 'id="id_inspector"' in body
    r = reg.post(CONFLICTS, {"organization": MARKET_FT, "reason": "曾任顾问", "inspector": setup["inspector"].username})
    assert r.status_code == 302
    citizen = login(registry.users["public"])
    assert 'id="conflict-form"' not in citizen.get(CONFLICTS).content.decode()
    assert citizen.post(CONFLICTS, {"organization": MARKET_FT, "reason": "x"}).status_code == 403


def test_results_are_published_on_the_public_plan_page(registry: Registry, setup: dict[str, Any]) -> None:
    task, plan = setup["task"], setup["plan"]
    reg = login(registry.users["futian"])
    finding_record(actor=setup["inspector"], task_id=task.pk, instrument_id=registry.scale_ft.pk, present=True,
                   seal_intact=False)
    task_complete(actor=setup["inspector"], task_id=task.pk)
    detail = reverse("supervision:plan_detail", args=[plan.pk])
    assert 'id="results-publish-form"' not in reg.get(detail).content.decode()  # the draw is not public yet
    plan_publish(actor=registry.users["futian"], plan_id=plan.pk)
    body = reg.get(detail).content.decode()
    assert 'id="plan-task-table"' in body and 'id="results-publish-form"' in body
    r = reg.post(reverse("supervision:results_publish", args=[plan.pk]), follow=True)
    assert "检查结果已公开" in r.content.decode()
    public = Client().get(reverse("supervision:public_plan", args=[plan.pk])).content.decode()
    section = public[public.index('id="results"'):public.index('id="commitment"')]
    assert registry.market_ft.name in section and "发现问题" in section and "整改中" in section
    for private in (PRIVATE_PHONE, setup["inspector"].username, setup["partner"].username, "检查员"):
        assert private not in public
    assert InspectionPlan.objects.get(pk=plan.pk).results_published_at is not None


def test_the_task_list_paginates(registry: Registry, setup: dict[str, Any]) -> None:
    inspector, partner = setup["inspector"], setup["partner"]
    for i in range(55):
        p = InspectionPlan.objects.create(name=f"p{i}", region_id=FUTIAN, period_start="2026-01-01",
                                          period_end="2026-01-31", shares={"B": 1.0}, created_by="t")
        InspectionTask.objects.create(plan=p, entity=registry.market_ft, inspector_1=inspector, inspector_2=partner)
    c = login(inspector)
    first = c.get(TASKS).content.decode()
    assert "共 56 个检查任务" in first and len(re.findall(r'data-task="\d+"', first)) == 50
    second = c.get(TASKS + "?page=2").content.decode()
    assert len(re.findall(r'data-task="\d+"', second)) == 6
    assert User.objects.filter(role="inspector").count() == 3
