"""Permission cases for correcting a verification's conclusion (更正检定结论) and for in-app messages
(站内提醒).  Expectations by hand from tests/world.py: every world verification was performed by the Futian
institute (org ``inst``), so only its people and administrators may correct one; everyone else who can see
the record is refused (403), the rest do not see it (404).  Messages are private to their recipient."""

from __future__ import annotations

from django.test import Client

from jiliang.accounts.models import Notification
from jiliang.accounts.services import notifications_create
from jiliang.verification.models import Verification
from tests.api.permcases import ALL_USERS, case, ids
from tests.world import World, expected_visibility

REASON = "检定点 3 的砝码读数录入错误，按原始记录更正"


@case("post", "/api/v1/verifications/{verification_id}/override")
def _override(w: World, c: dict[str, Client]) -> None:
    allowed = {"admin", "futian_institute"}
    exp = expected_visibility(w)
    v = w.verifications["V_F"]
    for name in ALL_USERS:
        current = Verification.objects.get(pk=v.pk).conforming
        r = c[name].post(f"/api/v1/verifications/{v.pk}/override", {"conforming": not current, "reason": REASON},
                         content_type="application/json")
        if name in allowed:
            assert r.status_code == 200, (name, r.content)
            body = r.json()
            assert body["conforming"] is (not current) and body["override_reason"] == REASON
            assert body["engine_conforming"] is True  # the engine's own verdict stays on the record
        else:
            assert r.status_code == (403 if v.pk in exp[name]["verifications"] else 404), (name, r.content)
            assert Verification.objects.get(pk=v.pk).conforming is current
    # a reason is required
    r = c["admin"].post(f"/api/v1/verifications/{v.pk}/override", {"conforming": True, "reason": "typo"},
                        content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "reason"


@case("get", "/api/v1/notifications")
def _notifications(w: World, c: dict[str, Client]) -> None:
    mine = {}
    for name, user in w.users.items():
        notifications_create(users=[user], title=f"给 {name} 的提醒")
        mine[name] = set(Notification.objects.filter(user=user).values_list("id", flat=True))
    for name in ALL_USERS:
        assert ids(c[name].get("/api/v1/notifications")) == mine[name], name
        assert ids(c[name].get("/api/v1/notifications?unread=true")) == mine[name], name


@case("post", "/api/v1/notifications/read")
def _notifications_read(w: World, c: dict[str, Client]) -> None:
    for user in w.users.values():
        notifications_create(users=[user], title="提醒")
    own_ids = {name: Notification.objects.get(user=u).pk for name, u in w.users.items()}
    notifications_create(users=[w.users["admin"]], title="别人的提醒")
    bystander = Notification.objects.get(title="别人的提醒")
    for name in ALL_USERS:
        # someone else's id is ignored, one's own is marked
        r = c[name].post("/api/v1/notifications/read", {"ids": [bystander.pk, own_ids[name]] if name != "admin"
                                                          else [own_ids[name]]}, content_type="application/json")
        assert r.status_code == 200 and r.json() == {"marked": 1}, (name, r.content)
        assert Notification.objects.get(pk=own_ids[name]).read_at is not None
    bystander.refresh_from_db()
    assert bystander.read_at is None  # nobody but its recipient could mark it
