"""The inspection-plan pages (双随机、一公开) through Django's test client: list and detail for each role, the
new-plan form, the lifecycle 草稿 → 已承诺 → 已抽取 → 已公开 by POSTs, refusals, the secret kept off every page
until publication, the public page, and a list whose query count does not grow with the plans.

Plans are made the way production makes them: through :mod:`jiliang.supervision.services`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from jiliang.core.models import ChangeLog
from jiliang.engine.draw import verify
from jiliang.supervision.models import InspectionPlan
from jiliang.supervision.services import (
    credit_event_record,
    credit_regrade,
    plan_commit,
    plan_create,
    plan_draw,
    plan_publish,
)
from tests.world import World

pytestmark = pytest.mark.django_db

LIST = reverse("supervision:plan_list")
TODAY = dt.date.today()
BEACON = "2026-11-23 国家授时中心随机数 8f3a91c2"


def detail(plan: InspectionPlan | int) -> str:
    return reverse("supervision:plan_detail", args=[getattr(plan, "pk", plan)])


def public(plan: InspectionPlan | int) -> str:
    return reverse("supervision:public_plan", args=[getattr(plan, "pk", plan)])


def action(plan: InspectionPlan | int, name: str) -> str:
    return reverse(f"supervision:plan_{name}", args=[getattr(plan, "pk", plan)])


def menu(body: str) -> str:
    """The main menu's HTML."""
    start = body.index('class="mainnav"')
    return body[start:body.index("</nav>", start)]


def login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def make_plan(world: World, region: str = "440300", name: str = "", by: str = "city_regulator",
              types: list[str] | None = None, shares: dict[str, float] | None = None) -> InspectionPlan:
    actor = world.users["admin" if by == "admin" else by]
    return plan_create(actor=actor, name=name or f"{region} 计价秤抽查", region_code=region, period_start=TODAY,
                       period_end=TODAY + dt.timedelta(days=30),
                       instrument_types=["scale"] if types is None else types, shares=shares)


def stall_f_is_grade_d(world: World) -> None:
    """Two confirmed cheating alerts put 福田区张三水产店 in grade D (南山区李四果蔬店 stays B)."""
    admin = world.users["admin"]
    for src in ("alert:1", "alert:2"):
        credit_event_record(actor=admin, entity_id=world.orgs["stall_f"].pk, kind="alert_confirmed",
                            occurred_on=TODAY, source=src)
    credit_regrade(actor=admin)


NEW_PLAN = {"name": "2026年第四季度电子计价秤双随机抽查", "region": "440300",
            "period_start": TODAY.isoformat(), "period_end": (TODAY + dt.timedelta(days=60)).isoformat(),
            "instrument_types": ["scale"], "share_A": "5", "share_B": "0", "share_C": "60", "share_D": "100"}


# ------------------------------------------------------------------------------------------ scope

@pytest.fixture
def three_plans(world: World) -> dict[str, InspectionPlan]:
    """A city-wide plan, a Futian plan and a Nanshan plan."""
    return {"city": make_plan(world, "440300"), "futian": make_plan(world, "440304"),
            "nanshan": make_plan(world, "440305")}


EXPECTED = {
    "admin": {"city", "futian", "nanshan"},
    "city_regulator": {"city", "futian", "nanshan"},
    "futian_regulator": {"futian"},
    "futian_inspector": {"futian"},
    "futian_institute": set(),
    "maker_user": set(),
    "water_user": set(),
    "stall_f_user": set(),
    "citizen": set(),
}


@pytest.mark.parametrize("who", sorted(EXPECTED))
def test_each_role_sees_the_plans_in_its_scope(client: Client, world: World, three_plans: dict[str, InspectionPlan],
                                               who: str) -> None:
    login(client, world.users[who])
    response = client.get(LIST)
    assert response.status_code == 200
    seen = {r.plan.pk for r in response.context["rows"]}
    assert seen == {three_plans[k].pk for k in EXPECTED[who]}
    body = response.content.decode()
    for key, plan in three_plans.items():
        assert (detail(plan) in body) == (key in EXPECTED[who])
        assert client.get(detail(plan)).status_code == (200 if key in EXPECTED[who] else 404)
    if not EXPECTED[who]:
        assert 'id="plans-empty"' in body and "还没有抽查计划" in body
    # the menu offers the plans to the people who run or carry them out
    assert (f'href="{LIST}"' in menu(body)) == (who in {"admin", "city_regulator", "futian_regulator",
                                                          "futian_inspector"})
    assert "<script>" not in body and " onclick=" not in body


def test_signed_out_visitors_are_sent_to_sign_in(client: Client, world: World) -> None:
    plan = make_plan(world)
    for url in (LIST, detail(plan)):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
    for name in ("commit", "draw", "publish"):
        assert client.post(action(plan, name), {"beacon": "x"}).status_code == 302
    assert client.post(LIST, NEW_PLAN).status_code == 302
    assert InspectionPlan.objects.get().status == "draft" and InspectionPlan.objects.count() == 1


# ------------------------------------------------------------------------------------------ the new-plan form

def test_the_form_offers_the_regulators_region_and_districts_and_the_default_shares(client: Client,
                                                                                    world: World) -> None:
    login(client, world.users["city_regulator"])
    form = client.get(LIST).context["form"]
    codes = [c for c, _label in form.fields["region"].choices]
    assert codes[0] == "440300" and "440304" in codes and "440305" in codes
    assert all(c.startswith("4403") for c in codes)
    assert {k for k, _label in form.fields["instrument_types"].choices} >= {"scale", "water_meter", "fuel_dispenser"}
    assert [str(form[f"share_{g}"].value()) for g in "ABCD"] == ["5", "20", "60", "100"]
    body = client.get(LIST).content.decode()
    assert 'id="plan-create-form"' in body and "新建抽查计划" in body
    for g, pct in zip("ABCD", ("5", "20", "60", "100"), strict=True):
        assert f'name="share_{g}" value="{pct}"' in body

    login(client, world.users["futian_regulator"])
    form = client.get(LIST).context["form"]
    assert [c for c, _label in form.fields["region"].choices] == ["440304"]
    # a region outside the regulator's own is not a choice: the form refuses it, nothing is created
    response = client.post(LIST, {**NEW_PLAN, "region": "440300"})
    assert response.status_code == 200 and "region" in response.context["form"].errors
    assert not InspectionPlan.objects.exists()


def test_default_shares_are_5_20_60_100_percent(client: Client, world: World) -> None:
    login(client, world.users["futian_regulator"])
    data = {k: v for k, v in NEW_PLAN.items() if not k.startswith("share_")}
    initial = client.get(LIST).context["form"].initial
    data.update({f"share_{g}": str(initial[f"share_{g}"]) for g in "ABCD"})
    response = client.post(LIST, {**data, "region": "440304"})
    plan = InspectionPlan.objects.get()
    assert response.status_code == 302 and response["Location"] == detail(plan)
    assert plan.shares == {"A": 0.05, "B": 0.2, "C": 0.6, "D": 1.0}
    assert plan.region_id == "440304" and plan.instrument_types == ["scale"] and plan.created_by == "futian_regulator"


@pytest.mark.parametrize(("change", "field"), [
    ({"period_end": (TODAY - dt.timedelta(days=1)).isoformat()}, "period_end"),
    ({"share_D": "101"}, "share_D"),
    ({"share_A": "-1"}, "share_A"),
    ({"name": ""}, "name"),
    ({"instrument_types": ["no_such_type"]}, "instrument_types"),
])
def test_the_form_refuses_bad_input_in_chinese(client: Client, world: World, change: dict[str, Any],
                                               field: str) -> None:
    login(client, world.users["city_regulator"])
    response = client.post(LIST, {**NEW_PLAN, **change})
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert 'id="form-errors"' in response.content.decode()
    assert not InspectionPlan.objects.exists()


@pytest.mark.parametrize("who", ["futian_inspector", "futian_institute", "stall_f_user", "citizen"])
def test_only_regulators_and_admins_create_plans(client: Client, world: World, who: str) -> None:
    login(client, world.users[who])
    response = client.get(LIST)
    assert response.context["form"] is None and 'id="plan-create-form"' not in response.content.decode()
    assert client.post(LIST, {**NEW_PLAN, "region": "440304"}).status_code == 403
    assert not InspectionPlan.objects.exists()


def test_an_admin_creates_a_plan_anywhere(client: Client, world: World) -> None:
    login(client, world.users["admin"])
    assert client.post(LIST, {**NEW_PLAN, "region": "445200"}).status_code == 302
    assert InspectionPlan.objects.get().region_id == "445200"


# ------------------------------------------------------------------------------------------ the lifecycle

def test_the_city_regulator_runs_a_plan_through_its_lifecycle(client: Client, world: World) -> None:
    stall_f_is_grade_d(world)
    login(client, world.users["city_regulator"])
    response = client.post(LIST, NEW_PLAN)
    plan = InspectionPlan.objects.get()
    assert response.status_code == 302 and response["Location"] == detail(plan)

    # 草稿: the commit form, no commitment yet
    page = client.get(detail(plan))
    html = page.content.decode()
    assert [(s.label, s.state) for s in page.context["steps"]] == [
        ("草稿", "current"), ("已承诺", "todo"), ("已抽取", "todo"), ("已公开", "todo")]
    assert 'id="commit-form"' in html and 'id="draw-form"' not in html and 'id="commitment"' not in html
    assert "草稿" in html and "冻结抽样框并承诺" in html and "data-confirm=" in html

    # 已承诺: the frame is frozen, the commitment shown, the beacon asked for with its explanation
    response = client.post(action(plan, "commit"))
    assert response.status_code == 302 and response["Location"] == detail(plan)
    plan.refresh_from_db()
    assert plan.status == "committed"
    page = client.get(detail(plan))
    html = page.content.decode()
    for text in (plan.frame_hash, plan.seed_commitment, plan.commitment_digest, "已冻结抽样框（2 个市场主体）",
                 "福田区张三水产店", "南山区李四果蔬店", world.orgs["stall_f"].uscc, "jiliang-draw-v1",
                 "信标值须在承诺公开之后确定，例如国家授时中心随机数或当日公开数据的摘要"):
        assert text in html, text
    assert 'id="draw-form"' in html and 'id="commit-form"' not in html and 'id="targets"' not in html
    assert [s.state for s in page.context["steps"]] == ["done", "current", "todo", "todo"]
    assert {(r.name, r.grade) for r in page.context["frame_rows"]} == {("福田区张三水产店", "D"),
                                                                       ("南山区李四果蔬店", "B")}

    # 已抽取: targets highlighted; the D entity is drawn (share 100 %), the B one is not (share 0 %)
    response = client.post(action(plan, "draw"), {"beacon": f"  {BEACON}  "})
    assert response.status_code == 302
    plan.refresh_from_db()
    assert plan.status == "drawn" and plan.beacon == BEACON and plan.selected == [world.orgs["stall_f"].uscc]
    page = client.get(detail(plan))
    html = page.content.decode()
    assert "抽取完成：抽中 1 个市场主体" in html and BEACON in html
    assert f'<tr data-uscc="{world.orgs["stall_f"].uscc}" data-drawn="true" class="is-drawn">' in html
    assert f'<tr data-uscc="{world.orgs["stall_n"].uscc}" data-drawn="false">' in html
    assert "<mark>福田区张三水产店</mark>" in html and "<mark>南山区李四果蔬店</mark>" not in html
    assert [r.name for r in page.context["targets"]] == ["福田区张三水产店"]
    assert 'id="publish-form"' in html and 'id="draw-form"' not in html
    drawn_only = client.get(detail(plan) + "?drawn=1")
    assert [r.name for r in drawn_only.context["frame_rows"]] == ["福田区张三水产店"]

    # 已公开: the secret, the seed, the bundle and how to verify
    response = client.post(action(plan, "publish"))
    assert response.status_code == 302
    plan.refresh_from_db()
    assert plan.status == "published"
    page = client.get(detail(plan))
    html = page.content.decode()
    bundle_url = f"/api/v1/public/plans/{plan.pk}/bundle"
    for text in (plan.secret_hex, plan.seed_hex, bundle_url, f"jiliang draw verify {plan.pk}", "docs/draw.md",
                 public(plan), "抽取结果已公开，流程完成。"):
        assert text in html, text
    assert [s.state for s in page.context["steps"]] == ["done", "done", "done", "current"]
    assert not any(f in html for f in ('id="commit-form"', 'id="draw-form"', 'id="publish-form"'))
    assert verify(Client().get(bundle_url).json()).ok
    assert ChangeLog.objects.filter(model="inspectionplan", object_id=str(plan.pk)).count() == 4


def test_a_missing_beacon_is_refused_on_the_page(client: Client, world: World) -> None:
    plan = plan_commit(actor=world.users["city_regulator"], plan_id=make_plan(world).pk)
    login(client, world.users["city_regulator"])
    response = client.post(action(plan, "draw"), {"beacon": "   "})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="form-errors"' in html and "未能抽取，请填写信标值。" in html
    assert plan.secret_hex not in html
    assert InspectionPlan.objects.get(pk=plan.pk).status == "committed"
    response = client.post(action(plan, "draw"), {"beacon": "x" * 201})
    assert response.status_code == 400 and InspectionPlan.objects.get(pk=plan.pk).status == "committed"


def test_refused_steps_are_explained_in_chinese(client: Client, world: World) -> None:
    login(client, world.users["city_regulator"])
    empty = make_plan(world, types=["taxi_meter"])  # nobody in the world owns a taxi meter
    response = client.post(action(empty, "commit"), follow=True)
    assert "抽样框为空" in response.content.decode()
    assert InspectionPlan.objects.get(pk=empty.pk).status == "draft"
    plan = make_plan(world)
    client.post(action(plan, "commit"))
    # out of order: commit again, publish before the draw
    for name in ("commit", "publish"):
        response = client.post(action(plan, name), follow=True)
        assert response.status_code == 200 and "计划状态已变化" in response.content.decode()
    assert InspectionPlan.objects.get(pk=plan.pk).status == "committed"
    assert client.get(action(plan, "commit")).status_code == 405
    assert client.post(detail(plan)).status_code == 405


def test_the_inspector_sees_a_plan_but_cannot_run_it(client: Client, world: World) -> None:
    plan = make_plan(world, "440304", by="futian_regulator")
    login(client, world.users["futian_inspector"])
    page = client.get(detail(plan))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="action-readonly"' in html and 'id="commit-form"' not in html
    assert client.post(action(plan, "commit")).status_code == 403
    plan_commit(actor=world.users["futian_regulator"], plan_id=plan.pk)
    html = client.get(detail(plan)).content.decode()
    assert 'id="draw-form"' not in html and 'id="action-readonly"' in html
    assert client.post(action(plan, "draw"), {"beacon": BEACON}).status_code == 403
    assert client.post(action(plan, "draw"), {"beacon": ""}).status_code == 403
    plan_draw(actor=world.users["futian_regulator"], plan_id=plan.pk, beacon=BEACON)
    assert client.post(action(plan, "publish")).status_code == 403
    assert InspectionPlan.objects.get(pk=plan.pk).status == "drawn"


def test_nobody_runs_a_plan_outside_their_scope(client: Client, world: World) -> None:
    plan = make_plan(world, "440300")
    for who in ("futian_regulator", "futian_institute", "stall_f_user", "citizen"):
        login(client, world.users[who])
        for name in ("commit", "draw", "publish"):
            assert client.post(action(plan, name), {"beacon": BEACON}).status_code == 404, (who, name)
    assert InspectionPlan.objects.get(pk=plan.pk).status == "draft"


# ------------------------------------------------------------------------------------------ the secret

def _pages(client: Client, plan: InspectionPlan) -> list[str]:
    out = []
    for url in (LIST, detail(plan), detail(plan) + "?drawn=1", public(plan)):
        response = client.get(url)
        out.append(response.content.decode() if response.status_code == 200 else "")
    return out


def test_the_secret_is_on_no_page_before_publication(world: World) -> None:
    stall_f_is_grade_d(world)
    reg = world.users["city_regulator"]
    plan = make_plan(world, "440304")
    viewers = [login(Client(), world.users[w]) for w in ("city_regulator", "admin", "futian_regulator",
                                                         "futian_inspector")] + [Client()]
    plan = plan_commit(actor=reg, plan_id=plan.pk)
    secret = plan.secret_hex
    assert len(secret) == 64
    for c in viewers:
        assert all(secret not in body for body in _pages(c, plan))
    plan = plan_draw(actor=reg, plan_id=plan.pk, beacon=BEACON)
    for c in viewers:
        pages = _pages(c, plan)
        assert all(secret not in body and plan.seed_hex not in body for body in pages)
    assert Client().get(f"/api/v1/public/plans/{plan.pk}/bundle").status_code == 404
    plan = plan_publish(actor=reg, plan_id=plan.pk)
    for c in viewers:
        detail_page, public_page = _pages(c, plan)[1], _pages(c, plan)[3]
        assert secret in public_page and plan.seed_hex in public_page
        assert (secret in detail_page) == (c is not viewers[-1])  # signed-out visitors get no detail page


# ------------------------------------------------------------------------------------------ the public page

def test_the_public_page_appears_only_with_publication(world: World) -> None:
    stall_f_is_grade_d(world)
    reg = world.users["city_regulator"]
    anonymous = Client()
    plan = make_plan(world, shares={"A": 0.05, "B": 0.0, "C": 0.6, "D": 1.0})
    assert anonymous.get(public(plan)).status_code == 404
    plan_commit(actor=reg, plan_id=plan.pk)
    assert anonymous.get(public(plan)).status_code == 404
    plan = plan_draw(actor=reg, plan_id=plan.pk, beacon=BEACON)
    assert anonymous.get(public(plan)).status_code == 404
    plan = plan_publish(actor=reg, plan_id=plan.pk)
    response = anonymous.get(public(plan))
    assert response.status_code == 200 and response["X-Robots-Tag"] == "noindex"
    html = response.content.decode()
    for text in (plan.name, "深圳市", "福田区张三水产店", world.orgs["stall_f"].uscc, plan.frame_hash,
                 plan.seed_commitment, plan.commitment_digest, BEACON, f"/api/v1/public/plans/{plan.pk}/bundle",
                 "jiliang draw verify", "docs/draw.md", "双随机、一公开"):
        assert text in html, text
    assert [r.name for r in response.context["targets"]] == ["福田区张三水产店"]
    assert "南山区李四果蔬店" not in html  # in the frame (in the bundle) but not drawn
    assert "0755-8888000" not in html  # no contact data
    assert "<script>" not in html and " onclick=" not in html
    assert anonymous.get(public(plan.pk + 1000)).status_code == 404


# ------------------------------------------------------------------------------------------ queries

def test_list_query_count_does_not_grow_with_the_plans(client: Client, world: World,
                                                       django_assert_max_num_queries: Any) -> None:
    reg = world.users["city_regulator"]
    plan_commit(actor=reg, plan_id=make_plan(world).pk)
    login(client, reg)
    client.get(LIST)  # warm up (session, content types)
    with django_assert_max_num_queries(12) as few:
        response = client.get(LIST)
    assert len(response.context["rows"]) == 1
    for i in range(59):
        plan = make_plan(world, name=f"计划 {i}")
        if i % 3 == 0:
            plan = plan_commit(actor=reg, plan_id=plan.pk)
        if i % 6 == 0:
            plan_draw(actor=reg, plan_id=plan.pk, beacon=f"b{i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST)
    rows = response.context["rows"]
    assert len(rows) == 50
    assert {r.plan.frame_size for r in rows} == {0, 2}
    assert {r.plan.drawn_count for r in rows if r.plan.status == "drawn"} <= {0, 1, 2}
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(LIST + "?page=2").context["rows"]) == 10
