"""Every write to the registry.  Keyword-only, typed, atomic, change-logged (HackSoft style).

Single creates go through the same validation as bulk import (a one-row table), so a row is judged the
same way whether it arrives through the API, the web page or ``jiliang import``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from jiliang.accounts.roles import Scope
from jiliang.core.changelog import log_change, snapshot
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied, Problem
from jiliang.registry import importing, policy
from jiliang.registry.choices import STATUS_TRANSITIONS, InstrumentStatus, OrgKind
from jiliang.registry.models import Instrument, Organization, OrganizationKind, Place
from jiliang.registry.tabular import one_row_table


def organization_create(*, actor: Any, values: dict[str, Any]) -> Organization:
    if isinstance(values.get("kinds"), list):
        values = {**values, "kinds": ";".join(values["kinds"])}
    importing.import_organizations(table=one_row_table(values), actor=actor)
    return Organization.objects.get(uscc=values["uscc"])


def place_create(*, actor: Any, values: dict[str, Any]) -> Place:
    importing.import_places(table=one_row_table(values), actor=actor)
    return Place.objects.get(key=values["key"])


def instrument_create(*, actor: Any, values: dict[str, Any]) -> Instrument:
    importing.import_instruments(table=one_row_table(values), actor=actor)
    return Instrument.objects.get(device_id=values["device_id"])


def _locked(qs: Any, pk: Any, what: str) -> Any:
    try:
        return qs.select_for_update().get(pk=pk)
    except qs.model.DoesNotExist:
        raise NotFound(f"{what} {pk} not found") from None


@transaction.atomic
def organization_update(*, actor: Any, organization_id: int, name: str | None = None,
                        address: str | None = None, contact_phone: str | None = None,
                        kinds: list[str] | None = None) -> Organization:
    if not Organization.objects.restrict(actor, "view").filter(pk=organization_id).exists():
        raise NotFound(f"organization {organization_id} not found")
    if not Organization.objects.restrict(actor, "change").filter(pk=organization_id).exists():
        raise PermissionDenied("you may not change this organization")
    org: Organization = _locked(Organization.objects.all(), organization_id, "organization")
    before = snapshot(org)
    problems: list[Problem] = []
    if name is not None:
        if not name.strip() or len(name) > 200:
            problems.append(Problem(row=None, field="name", reason="must be 1 to 200 characters"))
        org.name = name.strip()
    if address is not None:
        org.address = address.strip()[:300]
    if contact_phone is not None:
        if contact_phone and not importing._PHONE_RE.match(contact_phone):
            problems.append(Problem(row=None, field="contact_phone", reason="not a telephone number"))
        org.contact_phone = contact_phone
    if kinds is not None:
        bad = [k for k in kinds if k not in OrgKind.values]
        if bad or not kinds:
            problems.append(Problem(row=None, field="kinds", reason=f"unknown or empty kinds: {bad}"))
    if problems:
        raise JiliangError("the organization was not changed", code="validation_failed", details=problems)
    org.full_clean(exclude=["uscc"])
    org.save()
    if kinds is not None:
        OrganizationKind.objects.filter(organization=org).exclude(kind__in=kinds).delete()
        for k in set(kinds):
            OrganizationKind.objects.get_or_create(organization=org, kind=k)
    log_change(actor=actor, obj=org, action="update", before=before)
    return org


@transaction.atomic
def instrument_update(*, actor: Any, instrument_id: int, status: str | None = None, place_key: str | None = None,
                      install_date: dt.date | None = None, sw_id: str | None = None, sw_hash: str | None = None,
                      public_key_hex: str | None = None, params: dict[str, Any] | None = None,
                      tank: str | None = None) -> Instrument:
    """Change an instrument's filed data or move it along its lifecycle (in stock → installed → in service
    → suspended → retired).  Identity fields (device_id, maker, serial, model) never change."""
    if not Instrument.objects.restrict(actor, "view").filter(pk=instrument_id).exists():
        raise NotFound(f"instrument {instrument_id} not found")
    if not Instrument.objects.restrict(actor, "change").filter(pk=instrument_id).exists():
        raise PermissionDenied("you may not change this instrument")
    inst: Instrument = _locked(Instrument.objects.all(), instrument_id, "instrument")
    before = snapshot(inst)
    problems: list[Problem] = []
    if status is not None and status != inst.status:
        if status not in InstrumentStatus.values:
            problems.append(Problem(row=None, field="status", reason="unknown status"))
        elif status not in STATUS_TRANSITIONS[inst.status]:
            problems.append(Problem(row=None, field="status",
                                    reason=f"cannot go from {inst.status} to {status}"))
        else:
            inst.status = status
    if place_key is not None:
        place = Place.objects.filter(key=place_key).first()
        if place is None:
            problems.append(Problem(row=None, field="place_key", reason="no place with this key is registered"))
        elif not policy.may_write_instrument(Scope.of(actor), owner_id=inst.owner_id, region_code=place.region_id):
            problems.append(Problem(row=None, field="place_key", reason="outside the region you may change"))
        else:
            inst.place = place
            inst.region_id = place.region_id
    if install_date is not None:
        inst.install_date = install_date
    for name, value, limit in (("sw_id", sw_id, 64), ("sw_hash", sw_hash, 128), ("public_key_hex", public_key_hex, 400),
                               ("tank", tank, 32)):
        if value is not None:
            if len(value) > limit:
                problems.append(Problem(row=None, field=name, reason=f"longer than {limit} characters"))
            setattr(inst, name, value)
    if params is not None:
        inst.params = params
    if problems:
        raise JiliangError("the instrument was not changed", code="validation_failed", details=problems)
    inst.save()
    log_change(actor=actor, obj=inst, action="update", before=before)
    return inst

