"""Every read of the registry, always through the restricted querysets."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from jiliang.core.errors import NotFound
from jiliang.registry.models import Instrument, InstrumentModel, InstrumentType, Organization, Place, Region


@dataclass(frozen=True)
class InstrumentFilters:
    q: str = ""
    instrument_type: str = ""
    status: str = ""
    region: str = ""
    owner_id: int | None = None
    place_id: int | None = None
    maker_id: int | None = None


def instrument_list(*, principal: Any, filters: InstrumentFilters | None = None, action: str = "view"
                    ) -> QuerySet[Instrument]:
    f = filters or InstrumentFilters()
    qs = Instrument.objects.restrict(principal, action).select_related(
        "instrument_type", "model", "owner", "maker", "place", "region")
    if f.q:
        qs = qs.filter(Q(device_id__icontains=f.q) | Q(serial__icontains=f.q) | Q(owner__name__icontains=f.q))
    if f.instrument_type:
        qs = qs.filter(instrument_type_id=f.instrument_type)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.region:
        from jiliang.accounts.roles import region_prefix

        qs = qs.filter(region__code__startswith=region_prefix(f.region))
    if f.owner_id:
        qs = qs.filter(owner_id=f.owner_id)
    if f.place_id:
        qs = qs.filter(place_id=f.place_id)
    if f.maker_id:
        qs = qs.filter(maker_id=f.maker_id)
    return qs.order_by("device_id")


def instrument_get(*, principal: Any, pk: int | None = None, device_id: str | None = None,
                   action: str = "view") -> Instrument:
    qs = instrument_list(principal=principal, action=action)
    try:
        return qs.get(pk=pk) if pk is not None else qs.get(device_id=device_id)
    except Instrument.DoesNotExist:
        raise NotFound(f"instrument {pk if pk is not None else device_id} not found") from None


def organization_list(*, principal: Any, q: str = "", kind: str = "", region: str = "") -> QuerySet[Organization]:
    qs = Organization.objects.restrict(principal, "view").select_related("region").prefetch_related("kinds")
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(uscc__icontains=q))
    if kind:
        qs = qs.filter(kinds__kind=kind)
    if region:
        from jiliang.accounts.roles import region_prefix

        qs = qs.filter(region__code__startswith=region_prefix(region))
    return qs.order_by("name", "id")


def organization_get(*, principal: Any, pk: int) -> Organization:
    try:
        return organization_list(principal=principal).get(pk=pk)
    except Organization.DoesNotExist:
        raise NotFound(f"organization {pk} not found") from None


def place_list(*, principal: Any, q: str = "", kind: str = "", region: str = "",
               operator_id: int | None = None) -> QuerySet[Place]:
    qs = Place.objects.restrict(principal, "view").select_related("region", "operator")
    if operator_id is not None:
        qs = qs.filter(operator_id=operator_id)
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(key__icontains=q) | Q(address__icontains=q))
    if kind:
        qs = qs.filter(kind=kind)
    if region:
        from jiliang.accounts.roles import region_prefix

        qs = qs.filter(region__code__startswith=region_prefix(region))
    return qs.order_by("key")


def place_get(*, principal: Any, pk: int) -> Place:
    try:
        return place_list(principal=principal).get(pk=pk)
    except Place.DoesNotExist:
        raise NotFound(f"place {pk} not found") from None


def instrument_model_list(*, principal: Any, instrument_type: str = "") -> QuerySet[InstrumentModel]:
    qs = InstrumentModel.objects.restrict(principal, "view").select_related("maker", "instrument_type")
    if instrument_type:
        qs = qs.filter(instrument_type_id=instrument_type)
    return qs.order_by("maker__name", "name")


def instrument_type_list() -> QuerySet[InstrumentType]:
    """The catalogue is public reference data."""
    return InstrumentType.objects.order_by("key")


def region_list() -> QuerySet[Region]:
    """Administrative divisions are public reference data."""
    return Region.objects.order_by("code")


def district_choices(*, principal: Any) -> list[Region]:
    from jiliang.accounts.roles import Scope

    scope = Scope.of(principal)
    qs = Region.objects.filter(level="district")
    if not scope.is_admin and scope.region_prefix:
        qs = qs.filter(code__startswith=scope.region_prefix)
    return list(qs.order_by("code"))


@dataclass(frozen=True)
class PublicInstrument:
    """What the public QR page shows (一器一码): nothing private (no owner contact, no keys, no tokens)."""

    device_id: str
    type_name: str
    type_name_en: str
    type_key: str
    regulation: str
    model: str
    accuracy_class: str
    maker_name: str
    owner_name: str
    place_name: str
    place_address: str
    region_name: str
    region_name_en: str
    region_code: str
    status: str
    status_label: str
    install_date: dt.date | None
    last_verified_on: dt.date | None
    last_verification_conforming: bool | None
    valid_until: dt.date | None
    verification_state: str  # none | valid | due_soon | overdue
    last_institution: str


def public_instrument_get(*, qr_token: str) -> PublicInstrument:
    inst = (Instrument.objects.select_related("instrument_type", "model", "maker", "owner", "place", "region")
            .filter(qr_token=qr_token).first())
    if inst is None:
        raise NotFound("no instrument carries this code")
    from jiliang.verification.selectors import public_latest_verification

    latest = public_latest_verification(inst)
    return PublicInstrument(
        device_id=inst.device_id, type_name=inst.instrument_type.name_zh, type_name_en=inst.instrument_type.name_en,
        type_key=inst.instrument_type_id,
        regulation=inst.instrument_type.regulation, model=inst.model.name, accuracy_class=inst.accuracy_class,
        maker_name=inst.maker.name, owner_name=inst.owner.name,
        place_name=inst.place.name if inst.place else "", place_address=inst.place.address if inst.place else "",
        region_name=inst.region.name, region_name_en=inst.region.name_en, region_code=inst.region_id,
        status=inst.status, status_label=str(inst.get_status_display()), install_date=inst.install_date,
        last_verified_on=latest.date, last_verification_conforming=latest.conforming, valid_until=inst.valid_until,
        verification_state=latest.state, last_institution=latest.institution,
    )


def dashboard_counts(*, principal: Any) -> dict[str, Any]:
    qs = Instrument.objects.restrict(principal, "view")
    by_type = list(qs.values("instrument_type_id", "instrument_type__name_zh").annotate(n=Count("id"))
                   .order_by("instrument_type_id"))
    by_status = list(qs.values("status").annotate(n=Count("id")).order_by("status"))
    by_region = list(qs.values("region_id", "region__name").annotate(n=Count("id")).order_by("region_id"))
    return {"total": sum(r["n"] for r in by_type), "by_type": by_type, "by_status": by_status,
            "by_region": by_region}
