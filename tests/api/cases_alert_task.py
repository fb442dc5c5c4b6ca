"""Permission case for ``POST /api/v1/alerts/{alert_id}/task`` (预警核查): an administrator or a regulator of the
alert's region opens the task of a confirmed alert; an inspector sees the alert but may not (403); everyone
else does not see it (404).  The task is opened once: asking again returns it."""

from __future__ import annotations

from django.test import Client

from jiliang.accounts.models import SystemPrincipal
from jiliang.monitoring.detection import alert_decide
from jiliang.monitoring.models import Alert
from jiliang.supervision.models import InspectionTask
from tests.api.permcases import ALL_USERS, case
from tests.supervision.inspection_setup import make_inspectors
from tests.world import World

OPENERS = {"admin", "city_regulator", "futian_regulator"}
VIEWERS = OPENERS | {"futian_inspector"}


@case("post", "/api/v1/alerts/{alert_id}/task")
def _alert_task(w: World, c: dict[str, Client]) -> None:
    make_inspectors("440305", 2)
    inst = w.instruments["I_F"]
    a = Alert.objects.create(detector="scale.amount_mismatch", device=inst, owner=inst.owner, region=inst.region,
                             severity="warning", opened_at="2026-11-20T08:00:00+08:00",
                             updated_at="2026-11-20T08:00:00+08:00", evidence={"mismatches": 1})
    r = c["admin"].post(f"/api/v1/alerts/{a.pk}/task", content_type="application/json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state", r.content  # not confirmed yet
    alert_decide(actor=SystemPrincipal("system:test"), alert_id=a.pk, status="confirmed")
    first = None
    for name in ALL_USERS:
        r = c[name].post(f"/api/v1/alerts/{a.pk}/task", content_type="application/json")
        if name in OPENERS:
            assert r.status_code == 200, (name, r.content)
            body = r.json()
            assert body["alert_id"] == a.pk and body["plan_id"] is None and body["entity_id"] == inst.owner_id
            assert len(body["inspectors"]) == 2 and body["status"] == "assigned"
            first = first or body["id"]
            assert body["id"] == first, name  # once per alert
        else:
            assert r.status_code == (403 if name in VIEWERS else 404), (name, r.content)
    assert InspectionTask.objects.filter(alert=a).count() == 1
