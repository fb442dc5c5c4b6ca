"""Permission cases for the inspection API: tasks (检查任务), findings, cases (案件), conflict declarations
(利益冲突声明) and the publication of results (一公开).

Expectations are written by hand from tests/world.py: the Futian task is on 福田区张三水产店 (stall_f) and
assigned to futian_inspector plus a second inspector created here; regulators of Futian and the city view it,
the entity sees its tasks once completed and its cases always, nobody else sees anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.test import Client

from jiliang.accounts.models import User
from jiliang.accounts.roles import Role
from jiliang.supervision.models import Case, ConflictDeclaration, InspectionPlan, InspectionTask
from jiliang.supervision.services import (
    finding_record,
    plan_create,
    plan_publish,
    task_complete,
)
from tests.api.permcases import ALL_USERS, PUBLIC_OPERATIONS, case, ids
from tests.supervision.inspection_setup import SCALE_BAD, SCALE_OK, drawn_plan
from tests.world import World

TASK_VIEWERS = {"admin", "city_regulator", "futian_regulator", "futian_inspector"}
CASE_VIEWERS = TASK_VIEWERS | {"stall_f_user"}
NOBODY_ELSE = {"futian_institute", "maker_user", "water_user", "citizen"}
TODAY = dt.date.today()

PUBLIC_OPERATIONS.add(("get", "/api/v1/public/plans/{plan_id}/results"))


def _second_inspector() -> User:
    u = User.objects.filter(username="futian_inspector_2").first()
    if u is None:
        u = User.objects.create(username="futian_inspector_2", role=Role.INSPECTOR, region_id="440304")
    return u


def _task(w: World) -> InspectionTask:
    """A fresh task on stall_f assigned to futian_inspector and a second Futian inspector."""
    plan = plan_create(actor=w.users["admin"], name="福田计价秤抽查", region_code="440304", period_start=TODAY,
                       period_end=TODAY, instrument_types=["scale"])
    return InspectionTask.objects.create(plan=plan, entity=w.orgs["stall_f"], inspector_1=w.users["futian_inspector"],
                                         inspector_2=_second_inspector())


def _case(w: World) -> Case:
    task = _task(w)
    finding_record(actor=w.users["futian_inspector"], task_id=task.pk, instrument_id=w.instruments["I_F"].pk,
                   present=True, seal_intact=True, points=SCALE_BAD)
    return Case.objects.get(task=task)


def _published_plan(w: World, beacon: str) -> InspectionPlan:
    """A Futian plan whose draw is public and whose tasks are done (or unassigned)."""
    _second_inspector()
    plan = drawn_plan(w.users["admin"], "440304", beacon=beacon)
    for task in plan.tasks.exclude(status="unassigned"):
        finding_record(actor=w.users["futian_inspector"], task_id=task.pk, instrument_id=w.instruments["I_F"].pk,
                       present=True, seal_intact=True, points=SCALE_OK)
        task_complete(actor=w.users["futian_inspector"], task_id=task.pk)
    return plan_publish(actor=w.users["admin"], plan_id=plan.pk)


@case("get", "/api/v1/tasks")
def _tasks(w: World, c: dict[str, Client]) -> None:
    task = _task(w)
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/tasks")) == ({task.pk} if name in TASK_VIEWERS else set()), name
    # the entity sees its own task once completed, with the result
    finding_record(actor=w.users["futian_inspector"], task_id=task.pk, instrument_id=w.instruments["I_F"].pk,
                   present=True, seal_intact=True)
    task_complete(actor=w.users["futian_inspector"], task_id=task.pk)
    for name in ALL_USERS:
        want = {task.pk} if name in TASK_VIEWERS | {"stall_f_user"} else set()
        assert ids(c[name].get("/api/v1/tasks?status=completed")) == want, name
    row = c["stall_f_user"].get("/api/v1/tasks").json()["items"][0]
    assert row["conclusion"] == "conforming" and row["entity_uscc"] == w.orgs["stall_f"].uscc


@case("get", "/api/v1/tasks/{task_id}")
def _task_get(w: World, c: dict[str, Client]) -> None:
    task = _task(w)
    for name in ALL_USERS:
        r = c[name].get(f"/api/v1/tasks/{task.pk}")
        assert r.status_code == (200 if name in TASK_VIEWERS else 404), name
    body = c["futian_inspector"].get(f"/api/v1/tasks/{task.pk}").json()
    assert [i["device_id"] for i in body["instruments"]] == ["SC-F-1"] and body["instruments"][0]["finding"] is None
    assert set(body["inspectors"]) == {"futian_inspector", "futian_inspector_2"}


@case("post", "/api/v1/tasks/{task_id}/findings")
def _finding(w: World, c: dict[str, Client]) -> None:
    allowed = {"admin", "futian_inspector"}
    for name in ALL_USERS:
        task = _task(w)
        r = c[name].post(f"/api/v1/tasks/{task.pk}/findings",
                         {"instrument_id": w.instruments["I_F"].pk, "present": True, "seal_intact": True,
                          "points": SCALE_BAD}, content_type="application/json")
        expected = 201 if name in allowed else (403 if name in TASK_VIEWERS else 404)
        assert r.status_code == expected, (name, r.content)
        assert Case.objects.filter(task=task).exists() == (name in allowed)
        if r.status_code == 201:
            body = r.json()
            assert body["conforming"] is False and body["case_id"] and body["problems"] == ["spot_check_nonconforming"]


@case("post", "/api/v1/tasks/{task_id}/complete")
def _complete(w: World, c: dict[str, Client]) -> None:
    allowed = {"admin", "futian_inspector"}
    for name in ALL_USERS:
        task = _task(w)
        finding_record(actor=w.users["futian_inspector"], task_id=task.pk, instrument_id=w.instruments["I_F"].pk,
                       present=True, seal_intact=True)
        r = c[name].post(f"/api/v1/tasks/{task.pk}/complete", {"summary": "ok"}, content_type="application/json")
        expected = 200 if name in allowed else (403 if name in TASK_VIEWERS else 404)
        assert r.status_code == expected, (name, r.content)
        task.refresh_from_db()
        assert (task.status == "completed") == (name in allowed)


@case("get", "/api/v1/cases")
def _cases(w: World, c: dict[str, Client]) -> None:
    cs = _case(w)
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/cases")) == ({cs.pk} if name in CASE_VIEWERS else set()), name
    assert ids(c["futian_regulator"].get("/api/v1/cases?status=closed")) == set()


@case("get", "/api/v1/cases/{case_id}")
def _case_get(w: World, c: dict[str, Client]) -> None:
    cs = _case(w)
    for name in ALL_USERS:
        r = c[name].get(f"/api/v1/cases/{cs.pk}")
        assert r.status_code == (200 if name in CASE_VIEWERS else 404), name
    body = c["stall_f_user"].get(f"/api/v1/cases/{cs.pk}").json()
    assert "计量法" in body["legal_basis"] and body["device_id"] == "SC-F-1" and body["status"] == "open"


@case("post", "/api/v1/cases/{case_id}/rectify")
def _rectify(w: World, c: dict[str, Client]) -> None:
    closing = {"admin", "city_regulator", "futian_regulator", "futian_inspector"}
    for name in ALL_USERS:
        cs = _case(w)
        r = c[name].post(f"/api/v1/cases/{cs.pk}/rectify", {"note": f"整改 by {name}"},
                         content_type="application/json")
        cs.refresh_from_db()
        if name in closing:
            assert r.status_code == 200 and cs.status == "closed", (name, r.content)
        elif name == "stall_f_user":  # the entity reports; a regulator or inspector confirms
            assert r.status_code == 200 and cs.status == "rectified", r.content
        else:
            assert r.status_code == 404 and cs.status == "open", (name, r.status_code)


@case("get", "/api/v1/conflicts")
def _conflicts(w: World, c: dict[str, Client]) -> None:
    d = ConflictDeclaration.objects.create(inspector=w.users["futian_inspector"], organization=w.orgs["stall_f"],
                                           reason="亲属关系", declared_by="futian_inspector")
    for name in ALL_USERS:
        want = {d.pk} if name in TASK_VIEWERS else set()
        assert ids(c[name].get("/api/v1/conflicts")) == want, name


@case("post", "/api/v1/conflicts")
def _declare(w: World, c: dict[str, Client]) -> None:
    insp = w.users["futian_inspector"]
    for n, name in enumerate(ALL_USERS):
        org = w.orgs[list(w.orgs)[n % len(w.orgs)]]
        ConflictDeclaration.objects.filter(organization=org).delete()
        body: dict[str, Any] = {"organization_id": org.pk, "reason": "曾在该单位任职"}
        if name != "futian_inspector":
            body["inspector_id"] = insp.pk
        r = c[name].post("/api/v1/conflicts", body, content_type="application/json")
        made = ConflictDeclaration.objects.filter(inspector=insp, organization=org).exists()
        if name in TASK_VIEWERS:
            assert r.status_code == 201 and made and r.json()["inspector"] == "futian_inspector", (name, r.content)
        else:
            assert r.status_code == 403 and not made, (name, r.status_code)


@case("post", "/api/v1/plans/{plan_id}/results/publish")
def _results_publish(w: World, c: dict[str, Client]) -> None:
    allowed = {"admin", "city_regulator", "futian_regulator"}
    for n, name in enumerate(ALL_USERS):
        plan = _published_plan(w, beacon=f"b{n}")
        r = c[name].post(f"/api/v1/plans/{plan.pk}/results/publish", content_type="application/json")
        expected = 200 if name in allowed else (403 if name == "futian_inspector" else 404)
        assert r.status_code == expected, (name, r.content)
        plan.refresh_from_db()
        assert (plan.results_published_at is not None) == (name in allowed)


@case("get", "/api/v1/public/plans/{plan_id}/results")
def _public_results(w: World, c: dict[str, Client]) -> None:
    plan = _published_plan(w, beacon="public")
    assert Client().get(f"/api/v1/public/plans/{plan.pk}/results").status_code == 404  # results not published
    c["futian_regulator"].post(f"/api/v1/plans/{plan.pk}/results/publish", content_type="application/json")
    for name, client in [("anonymous", Client()), *c.items()]:
        r = client.get(f"/api/v1/public/plans/{plan.pk}/results")
        assert r.status_code == 200, name
        rows = r.json()["results"]
        assert [x["uscc"] for x in rows] == [w.orgs["stall_f"].uscc]
        assert rows[0]["conclusion"] == "conforming" and rows[0]["case_outcome"] == "none"
        text = r.content.decode()
        assert "futian_inspector" not in text and w.orgs["stall_f"].contact_phone not in text
