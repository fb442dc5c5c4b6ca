"""A confirmed alert opens an inspection task (预警核查, C7): not part of a plan, the instrument's owner, two
inspectors drawn from the alert id (docs/draw.md §7), linked both ways, change-logged; and the pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from jiliang.accounts.models import SystemPrincipal
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.core.models import ChangeLog
from jiliang.engine import pairing
from jiliang.monitoring.detection import alert_decide
from jiliang.monitoring.models import Alert
from jiliang.supervision.models import ConflictDeclaration, InspectionTask
from jiliang.supervision.services import alert_task_open, alert_task_seed, task_instruments
from tests.supervision.inspection_setup import PASSWORD, make_inspectors
from tests.world import World


def _alert(w: World, status: str = "confirmed", detector: str = "scale.amount_mismatch",
           evidence: dict[str, Any] | None = None) -> Alert:
    inst = w.instruments["I_F"]
    a = Alert.objects.create(detector=detector, device=inst, owner=inst.owner, region=inst.region, severity="warning",
                             opened_at="2026-11-20T08:00:00+08:00", updated_at="2026-11-20T08:00:00+08:00",
                             evidence=evidence or {"mismatches": 1})
    if status != "new":
        alert_decide(actor=SystemPrincipal("system:test"), alert_id=a.pk, status=status,
                     reason="" if status != "dismissed" else "no")
    return a


@pytest.fixture
def inspectors(world: World) -> list[Any]:
    # the city's team: Futian and Nanshan inspectors (and the world's own futian_inspector)
    return make_inspectors("440304", 2) + make_inspectors("440305", 2)


def test_confirmed_alert_opens_a_task_with_two_drawn_inspectors(world: World, inspectors: list[Any]) -> None:
    a = _alert(world)
    actor = world.users["futian_regulator"]
    task = alert_task_open(actor=actor, alert_id=a.pk)
    assert task.plan is None and task.alert_id == a.pk and task.entity_id == world.orgs["stall_f"].pk
    assert task.status == "assigned" and task.inspector_1_id and task.inspector_2_id
    # the draw is jiliang-pairing-v1 seeded from the alert id, recomputable from the stored bundle
    assert task.pairing["variant"] == "jiliang-alert-task-v1" and task.pairing["seed_hex"] == alert_task_seed(a.pk)
    assert pairing.verify(task.pairing, seed_hex=alert_task_seed(a.pk)) == []
    pool = sorted(str(u.pk) for u in [*inspectors, world.users["futian_inspector"]])
    assert task.pairing["inspectors"] == pool
    again = pairing.pair(seed_hex=alert_task_seed(a.pk), targets=[world.orgs["stall_f"].uscc], inspectors=pool)
    assert again[0].inspectors == (str(task.inspector_1_id), str(task.inspector_2_id))
    # linked both ways, logged, the alert's instrument on the task's list
    assert Alert.objects.get(pk=a.pk).inspection_task == task
    assert list(task_instruments(task)) == [world.instruments["I_F"]]
    assert ChangeLog.objects.filter(model="inspectiontask", object_id=str(task.pk), action="create").count() == 1
    # asking again returns the same task
    assert alert_task_open(actor=actor, alert_id=a.pk) == task
    assert InspectionTask.objects.filter(alert=a).count() == 1


def test_conflicts_are_respected(world: World, inspectors: list[Any]) -> None:
    a = _alert(world)
    for u in inspectors[:3]:
        ConflictDeclaration.objects.create(inspector=u, organization=world.orgs["stall_f"], reason="亲属",
                                           declared_by="test")
    task = alert_task_open(actor=world.users["admin"], alert_id=a.pk)
    assert {task.inspector_1_id, task.inspector_2_id} == {inspectors[3].pk, world.users["futian_inspector"].pk}


def test_only_confirmed_alerts_and_only_their_regulators(world: World, inspectors: list[Any]) -> None:
    new, dismissed = _alert(world, "new"), _alert(world, "dismissed", detector="scale.recheck_shortfall")
    for a in (new, dismissed):
        with pytest.raises(JiliangError) as exc:
            alert_task_open(actor=world.users["admin"], alert_id=a.pk)
        assert exc.value.code == "invalid_state"
    a = _alert(world, detector="scale.software_checksum")
    with pytest.raises(PermissionDenied):
        alert_task_open(actor=world.users["futian_inspector"], alert_id=a.pk)  # sees the alert, may not act
    with pytest.raises(NotFound):
        alert_task_open(actor=world.users["stall_f_user"], alert_id=a.pk)
    assert not InspectionTask.objects.exists()


def test_tank_leak_task_lists_the_tanks_nozzles(world: World, inspectors: list[Any]) -> None:
    a = _alert(world, detector="fuel.tank_leak", evidence={"nozzles": ["SC-F-1", "SC-N-1"], "episode": "leak"})
    task = alert_task_open(actor=world.users["admin"], alert_id=a.pk)
    assert [i.device_id for i in task_instruments(task)] == ["SC-F-1"]  # only the owner's own


def _client(world: World, name: str) -> Client:
    c = Client()
    assert c.login(username=name, password=PASSWORD)
    return c


def test_pages_link_alert_and_task(world: World, inspectors: list[Any]) -> None:
    a = _alert(world)
    reg = _client(world, "futian_regulator")
    page = reg.get(f"/alerts/{a.pk}/").content.decode()
    assert 'id="alert-task-form"' in page and "开立预警核查任务" in page
    insp = _client(world, "futian_inspector")
    assert 'id="alert-task-form"' not in insp.get(f"/alerts/{a.pk}/").content.decode()
    assert insp.post(f"/alerts/{a.pk}/task/").status_code == 403
    r = reg.post(f"/alerts/{a.pk}/task/")
    task = InspectionTask.objects.get(alert=a)
    assert r.status_code == 302 and r["Location"] == f"/tasks/{task.pk}/"
    page = reg.get(f"/alerts/{a.pk}/").content.decode()
    assert 'id="alert-task"' in page and f'href="/tasks/{task.pk}/"' in page and 'id="alert-task-form"' not in page
    detail = reg.get(f"/tasks/{task.pk}/").content.decode()
    assert 'id="task-alert"' in detail and f'href="/alerts/{a.pk}/#evidence"' in detail
    assert "预警核查" in reg.get("/tasks/").content.decode()
    # a drawn inspector sees the task and its alert link
    drawn = next(u for u in [*inspectors, world.users["futian_inspector"]] if u.pk == task.inspector_1_id)
    c = Client()
    c.force_login(drawn)
    assert 'id="task-alert"' in c.get(f"/tasks/{task.pk}/").content.decode()
