"""Due-date reminders (到期提醒), the due list page and correcting a conclusion (更正检定结论)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.test import Client

from jiliang.accounts.models import Notification
from jiliang.core.changelog import history_for
from jiliang.core.errors import JiliangError
from jiliang.registry.models import Instrument
from jiliang.verification.certificates import certificate_issue, certificate_revoke, institution_key_create
from jiliang.verification.models import Reminder, Verification
from jiliang.verification.services import reminders_send, verification_override, verification_record
from tests.world import World

pytestmark = pytest.mark.django_db
TODAY = dt.date(2026, 11, 23)


def _set_validity(w: World, key: str, valid: dt.date | None) -> Instrument:
    inst = w.instruments[key]
    Instrument.objects.filter(pk=inst.pk).update(valid_until=valid, last_verified_on=dt.date(2025, 6, 1))
    inst.refresh_from_db()
    return inst


def test_reminders_reach_the_owner_once_per_validity_and_regulators_get_the_overdue(world: World, settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    world.users["stall_f_user"].email = "stall@example.cn"
    world.users["stall_f_user"].save()
    _set_validity(world, "I_F", TODAY + dt.timedelta(days=10))    # due soon (stall_f)
    _set_validity(world, "I_W", TODAY - dt.timedelta(days=3))     # overdue (water, Nanshan)
    _set_validity(world, "I_N", TODAY + dt.timedelta(days=200))   # fine
    r = reminders_send(as_of=TODAY, within_days=30)
    assert (r.due_soon, r.overdue) == (1, 1)
    stall_notes = Notification.objects.filter(user=world.users["stall_f_user"])
    assert stall_notes.count() == 1 and "SC-F-1" in stall_notes.get().body and "即将到期" in stall_notes.get().body
    water_note = Notification.objects.get(user=world.users["water_user"])
    assert "WM-N-1" in water_note.body and "已超期" in water_note.body
    # the owner of an instrument that is not due hears nothing
    assert not Notification.objects.filter(title__contains="计量器具检定到期").exclude(
        user__in=[world.users["stall_f_user"], world.users["water_user"]]).exists()
    # the city regulator covers Nanshan's overdue meter; the Futian regulator does not
    assert Notification.objects.filter(user=world.users["city_regulator"], title__contains="超期").exists()
    assert not Notification.objects.filter(user=world.users["futian_regulator"]).exists()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["stall@example.cn"] and "SC-F-1" in mail.outbox[0].body
    # a second run the same day (or the next) repeats nothing
    again = reminders_send(as_of=TODAY + dt.timedelta(days=1), within_days=30)
    assert (again.due_soon, again.overdue, again.notifications) == (0, 0, 0) and len(mail.outbox) == 1
    # once the due-soon scale passes its date, the overdue reminder is a new one
    later = reminders_send(as_of=TODAY + dt.timedelta(days=11), within_days=30)
    assert later.overdue == 1 and Reminder.objects.filter(instrument=world.instruments["I_F"]).count() == 2


def test_a_new_verification_starts_reminders_afresh(world: World) -> None:
    _set_validity(world, "I_F", TODAY - dt.timedelta(days=1))
    reminders_send(as_of=TODAY)
    _set_validity(world, "I_F", TODAY + dt.timedelta(days=365 * 2))  # verified again
    assert reminders_send(as_of=TODAY).overdue == 0
    _set_validity(world, "I_F", TODAY - dt.timedelta(days=2))  # a different validity date: remind again
    assert reminders_send(as_of=TODAY).overdue == 1


def test_due_list_page_is_scoped_and_has_both_tabs(world: World) -> None:
    today = dt.date.today()
    _set_validity(world, "I_F", today + dt.timedelta(days=5))
    _set_validity(world, "I_N", today - dt.timedelta(days=5))
    c = Client()
    c.force_login(world.users["futian_regulator"])
    soon = c.get("/verifications/due/").content.decode()
    assert "SC-F-1" in soon and "SC-N-1" not in soon
    over = c.get("/verifications/due/?overdue=1").content.decode()
    assert "SC-N-1" not in over and "没有超期未检的计量器具" in over  # Nanshan is not Futian's
    c.force_login(world.users["city_regulator"])
    assert "SC-N-1" in c.get("/verifications/due/?overdue=1").content.decode()


def test_notifications_page_lists_and_marks_read(world: World) -> None:
    from jiliang.accounts.services import notifications_create

    notifications_create(users=[world.users["water_user"]], title="检定到期提醒测试", body="WM-N-1 有效期至 2026-12-01")
    c = Client()
    c.force_login(world.users["water_user"])
    page = c.get("/notifications/").content.decode()
    assert "检定到期提醒测试" in page and "全部标为已读" in page
    assert 'id="notify-link"' in c.get("/").content.decode()
    assert c.post("/notifications/").status_code == 302
    assert not Notification.objects.filter(read_at__isnull=True).exists()
    c.force_login(world.users["stall_f_user"])
    assert "检定到期提醒测试" not in c.get("/notifications/").content.decode()


POINTS = [{"load_g": 2500, "error_g": 2.5}, {"load_g": 15000, "error_g": -5}]


def test_override_keeps_the_engine_verdict_updates_validity_and_is_logged(world: World) -> None:
    inst = world.instruments["I_F"]
    v = verification_record(actor=world.users["futian_institute"], device_id="SC-F-1", kind="periodic",
                            date="2026-06-01", institution_uscc=world.orgs["inst"].uscc, points=POINTS,
                            standards="F1 级砝码 (0~15 kg)，证书号 JL-2026-001", temperature_c=21.5, humidity_pct=55)
    assert v.conforming and v.standards.startswith("F1") and v.temperature_c == 21.5
    inst.refresh_from_db()
    assert inst.last_verification_conforming is True and inst.valid_until is not None
    with pytest.raises(JiliangError) as exc:
        verification_override(actor=world.users["futian_institute"], verification_id=v.pk, conforming=False,
                               reason="short")
    assert exc.value.details[0].field == "reason"
    with pytest.raises(JiliangError):  # someone who did not perform it
        verification_override(actor=world.users["futian_regulator"], verification_id=v.pk, conforming=False,
                              reason="外观检查发现铅封破损，结论应为不合格")
    v = verification_override(actor=world.users["futian_institute"], verification_id=v.pk, conforming=False,
                              reason="外观检查发现铅封破损，结论应为不合格")
    assert (v.conforming, v.engine_conforming, v.valid_until) == (False, True, None)
    inst.refresh_from_db()
    assert inst.last_verification_conforming is False and inst.valid_until is None
    entry = next(e for e in history_for(v) if e.action == "update")
    assert entry.before["conforming"] is True and entry.after["conforming"] is False
    assert entry.after["override_reason"].startswith("外观检查")


def test_override_refused_while_a_certificate_stands(world: World) -> None:
    v = verification_record(actor=world.users["futian_institute"], device_id="SC-F-1", kind="periodic",
                            date="2026-06-01", institution_uscc=world.orgs["inst"].uscc, points=POINTS)
    institution_key_create(actor=world.users["admin"], organization_id=world.orgs["inst"].pk)
    cert = certificate_issue(actor=world.users["futian_institute"], verification_id=v.pk)
    with pytest.raises(JiliangError) as exc:
        verification_override(actor=world.users["futian_institute"], verification_id=v.pk, conforming=False,
                              reason="复核发现第二点示值误差超差")
    assert exc.value.status == 409
    certificate_revoke(actor=world.users["futian_institute"], certificate_id=cert.pk, reason="结论更正")
    v = verification_override(actor=world.users["futian_institute"], verification_id=v.pk, conforming=False,
                              reason="复核发现第二点示值误差超差")
    assert Verification.objects.get(pk=v.pk).conforming is False
