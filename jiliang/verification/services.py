"""Writes for verification records."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.utils import timezone

from jiliang.accounts.models import User
from jiliang.accounts.roles import Role, Scope
from jiliang.accounts.services import notifications_create
from jiliang.core.changelog import log_change, snapshot
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied, Problem
from jiliang.engine.validity import valid_until
from jiliang.registry.models import Instrument, InstrumentType
from jiliang.registry.tabular import one_row_table
from jiliang.verification.importing import import_verifications
from jiliang.verification.models import Certificate, Reminder, ReminderKind, Verification


def verification_record(*, actor: Any, device_id: str, kind: str, date: str, institution_uscc: str,
                        points: list[dict[str, Any]], stage: str = "initial", certificate_no: str = "",
                        verifier: str = "", standards: str = "", temperature_c: float | None = None,
                        humidity_pct: float | None = None) -> Verification:
    """Record one verification: validated, judged and change-logged exactly like an imported row."""
    values = {"device_id": device_id, "kind": kind, "date": date, "institution_uscc": institution_uscc,
              "points": orjson.dumps(points).decode(), "stage": stage, "certificate_no": certificate_no,
              "verifier": verifier, "standards": standards,
              "temperature_c": "" if temperature_c is None else str(temperature_c),
              "humidity_pct": "" if humidity_pct is None else str(humidity_pct)}
    import_verifications(table=one_row_table(values), actor=actor)
    return Verification.objects.filter(instrument__device_id=device_id).order_by("-id").first()  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ conclusion override

@transaction.atomic
def verification_override(*, actor: Any, verification_id: int, conforming: bool, reason: str) -> Verification:
    """Correct the engine's conclusion (更正检定结论), e.g. a point the engine could not judge from the data.

    Only the institution that performed the verification (or an administrator) may; a reason of at least
    10 characters is required; the engine's own verdict is kept beside it and the change is logged.  A
    verification with an unrevoked certificate must have the certificate revoked first (a certificate
    must never contradict its record).  Validity and the instrument's latest result follow the new
    conclusion."""
    scope = Scope.of(actor)
    v = Verification.objects.select_for_update().select_related("instrument").filter(pk=verification_id).first()
    if v is None or not Verification.objects.restrict(actor, "view").filter(pk=verification_id).exists():
        raise NotFound(f"verification {verification_id} not found")
    if not scope.is_admin and not (scope.role in (Role.INSTITUTE, Role.MANUFACTURER)
                                   and scope.org_id == v.institution_id):
        raise PermissionDenied("only the institution that performed the verification may correct its conclusion")
    reason = reason.strip()
    if len(reason) < 10:
        raise JiliangError("a reason of at least 10 characters is required", code="validation_failed",
                           details=[Problem(row=None, field="reason", reason="at least 10 characters")])
    if bool(conforming) == v.conforming:
        raise JiliangError("the conclusion already is " + ("conforming" if conforming else "non-conforming"),
                           code="validation_failed",
                           details=[Problem(row=None, field="conforming", reason="no change")])
    if Certificate.objects.filter(verification=v, revoked_at__isnull=True).exists():
        raise JiliangError("revoke the certificate of this verification first", code="conflict", status=409)
    before = snapshot(v)
    inst = v.instrument
    itype = InstrumentType.objects.get(pk=inst.instrument_type_id)
    first_pass = (Verification.objects.filter(instrument=inst, conforming=True).exclude(pk=v.pk)
                  .order_by("date").values_list("date", flat=True).first())
    if conforming and (first_pass is None or v.date < first_pass):
        first_pass = v.date
    if v.engine_conforming is None:
        v.engine_conforming = v.conforming
    v.conforming = bool(conforming)
    v.override_reason = reason
    v.valid_until = valid_until(mode=itype.verification_mode, period_months=itype.period_months,
                                service_life_years=itype.service_life_years, verified_on=v.date,
                                conforming=v.conforming, first_verified_on=first_pass)
    v.save(update_fields=["conforming", "engine_conforming", "override_reason", "valid_until"])
    log_change(actor=actor, obj=v, action="update", before=before)
    latest = Verification.objects.filter(instrument=inst).order_by("-date", "-id").first()
    if latest is not None and latest.pk == v.pk:
        inst_before = snapshot(inst)
        inst.last_verification_conforming, inst.valid_until = v.conforming, v.valid_until
        inst.save(update_fields=["last_verification_conforming", "valid_until", "updated_at"])
        log_change(actor=actor, obj=inst, action="update", before=inst_before)
    return v


# --------------------------------------------------------------------------------------- due reminders

@dataclass
class ReminderReport:
    due_soon: int = 0
    overdue: int = 0
    organizations: int = 0
    notifications: int = 0
    emails: int = 0


def reminders_send(*, as_of: dt.date | None = None, within_days: int | None = None) -> ReminderReport:
    """Due-date reminders (到期提醒): for every instrument in service whose validity ends within
    ``within_days`` (default ``JILIANG_DUE_SOON_DAYS``) or has ended, not yet reminded for that validity
    date, the owner's people get one in-app message and one e-mail per organisation listing them, and the
    regulators of each district one summary of the newly overdue.  Idempotent (``Reminder`` rows); run
    daily by ``jiliang worker`` and by ``jiliang reminders send``.  Addresses are never logged."""
    today = as_of or timezone.localdate()
    days = settings.JILIANG_DUE_SOON_DAYS if within_days is None else within_days
    report = ReminderReport()
    candidates = (Instrument.objects.filter(status__in=["installed", "in_service"], valid_until__isnull=False,
                                            valid_until__lte=today + dt.timedelta(days=days))
                  .values_list("id", "device_id", "owner_id", "region_id", "valid_until"))
    with transaction.atomic():
        sent = set(Reminder.objects.filter(valid_until__lte=today + dt.timedelta(days=days))
                   .values_list("instrument_id", "kind", "valid_until"))
        new: list[Reminder] = []
        by_org: dict[int, list[tuple[str, str, dt.date]]] = defaultdict(list)
        overdue_by_region: dict[str, int] = defaultdict(int)
        for inst_id, device_id, owner_id, region_id, valid in candidates.iterator(chunk_size=5000):
            if valid is None:  # excluded by the query; narrows the type
                continue
            kind = ReminderKind.OVERDUE if valid < today else ReminderKind.DUE_SOON
            if (inst_id, kind.value, valid) in sent:
                continue
            new.append(Reminder(instrument_id=inst_id, organization_id=owner_id, kind=kind, valid_until=valid))
            by_org[owner_id].append((device_id, kind.value, valid))
            if kind == ReminderKind.OVERDUE:
                report.overdue += 1
                overdue_by_region[region_id] += 1
            else:
                report.due_soon += 1
        Reminder.objects.bulk_create(new, batch_size=2000)
        messages: list[EmailMessage] = []
        people = defaultdict(list)
        for u in User.objects.filter(organization_id__in=list(by_org), is_active=True):
            people[u.organization_id].append(u)
        for org_id, items in by_org.items():
            users = people.get(org_id, [])
            if not users:
                continue
            report.organizations += 1
            title, body = _reminder_text(items, today)
            report.notifications += notifications_create(users=users, title=title, body=body,
                                                         link="/verifications/due/")
            to = [u.email for u in users if u.email]
            if to:
                messages.append(EmailMessage(subject=f"[计量监管平台] {title}", body=body, to=to))
        all_regulators = list(User.objects.filter(role=Role.REGULATOR, is_active=True, region__isnull=False)
                              ) if overdue_by_region else []
        for region_id, n in overdue_by_region.items():
            regulators = [u for u in all_regulators if region_id.startswith(_prefix(u.region_id or ""))]
            if regulators:
                report.notifications += notifications_create(
                    users=regulators, title=f"辖区新增 {n} 台超期未检计量器具",
                    body=f"行政区划 {region_id}：{n} 台计量器具的检定有效期已过，请督促使用单位送检。",
                    link="/verifications/due/?overdue=1")
    if messages:
        with get_connection() as conn:
            report.emails = conn.send_messages(messages) or 0
    return report


def _prefix(region_code: str) -> str:
    """GB/T 2260 nesting: 440000 -> 44, 440300 -> 4403, 440304 -> 440304."""
    code = region_code.rstrip("0")
    return code if len(code) % 2 == 0 else code + "0"


def _reminder_text(items: list[tuple[str, str, dt.date]], today: dt.date) -> tuple[str, str]:
    overdue = [i for i in items if i[1] == "overdue"]
    soon = [i for i in items if i[1] == "due_soon"]
    parts = []
    if overdue:
        parts.append(f"{len(overdue)} 台已超过检定有效期")
    if soon:
        parts.append(f"{len(soon)} 台将在有效期内到期")
    title = "计量器具检定到期提醒：" + "，".join(parts)
    lines = [f"截至 {today.isoformat()}，贵单位有以下计量器具需要申请检定（强制检定计量器具超期使用属违法行为）："]
    for device_id, kind, valid in sorted(items, key=lambda x: x[2])[:50]:
        state = "已超期" if kind == "overdue" else "即将到期"
        lines.append(f"  {device_id}  有效期至 {valid.isoformat()}  {state}")
    if len(items) > 50:
        lines.append(f"  …… 另有 {len(items) - 50} 台，请登录平台查看到期清单。")
    return title, "\n".join(lines)
