from __future__ import annotations

import pytest

from jiliang.core.errors import JiliangError, NotFound, PermissionDenied
from jiliang.core.models import AppendOnlyError, ChangeLog
from jiliang.registry import services
from tests.world import World

pytestmark = pytest.mark.django_db


def test_lifecycle_transitions(world: World) -> None:
    admin = world.users["admin"]
    i = world.instruments["I_F"]
    services.instrument_update(actor=admin, instrument_id=i.pk, status="suspended")
    services.instrument_update(actor=admin, instrument_id=i.pk, status="in_service")
    services.instrument_update(actor=admin, instrument_id=i.pk, status="retired")
    with pytest.raises(JiliangError) as exc:
        services.instrument_update(actor=admin, instrument_id=i.pk, status="in_service")
    assert "cannot go from retired to in_service" in exc.value.details[0].reason


def test_update_is_logged_with_before_and_after(world: World) -> None:
    user = world.users["stall_f_user"]
    i = world.instruments["I_F"]
    services.instrument_update(actor=user, instrument_id=i.pk, sw_id="V2.1", sw_hash="abcd")
    log = ChangeLog.objects.filter(model="instrument", object_id=str(i.pk), action="update").get()
    assert log.before["sw_id"] == "" and log.after["sw_id"] == "V2.1" and log.actor_label == "stall_f_user"
    assert log.actor_id == user.pk and log.request_id


def test_moving_to_another_district_needs_scope_there(world: World) -> None:
    i = world.instruments["I_F"]
    with pytest.raises(JiliangError):
        services.instrument_update(actor=world.users["futian_regulator"], instrument_id=i.pk, place_key="MKT-N")
    services.instrument_update(actor=world.users["city_regulator"], instrument_id=i.pk, place_key="MKT-N")
    i.refresh_from_db()
    assert i.region_id == "440305"


def test_not_found_and_denied_are_distinct(world: World) -> None:
    with pytest.raises(NotFound):
        services.instrument_update(actor=world.users["water_user"], instrument_id=world.instruments["I_F"].pk,
                                   sw_id="x")
    with pytest.raises(PermissionDenied):
        services.instrument_update(actor=world.users["futian_inspector"], instrument_id=world.instruments["I_F"].pk,
                                   sw_id="x")


def test_change_log_is_append_only(world: World) -> None:
    services.instrument_update(actor=world.users["admin"], instrument_id=world.instruments["I_F"].pk, sw_id="x")
    row = ChangeLog.objects.first()
    assert row is not None
    row.actor_label = "someone else"
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()
    with pytest.raises(AppendOnlyError):
        ChangeLog.objects.all().update(actor_label="x")
    with pytest.raises(AppendOnlyError):
        ChangeLog.objects.all().delete()
