"""Registry REST API (``/api/v1/``): thin handlers over selectors and services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile

from jiliang.core.api import ERRORS, Page, paginate, principal
from jiliang.core.errors import JiliangError
from jiliang.registry import selectors, services
from jiliang.registry.selectors import InstrumentFilters
from jiliang.registry.tabular import read_table

router = Router(tags=["registry"])


class RegionOut(Schema):
    code: str
    name: str
    name_en: str
    level: str
    parent_id: str | None


class InstrumentTypeOut(Schema):
    key: str
    name_zh: str
    name_en: str
    regulation: str
    oiml: str
    accuracy_classes: list[str]
    verification_mode: str
    period_months: int | None
    service_life_years: int | None
    source: str
    confidence: str


class OrganizationOut(Schema):
    id: int
    uscc: str
    name: str
    kinds: list[str]
    region_code: str
    address: str
    contact_phone: str

    @staticmethod
    def resolve_kinds(obj: Any) -> list[str]:
        return list(obj.kind_list)

    @staticmethod
    def resolve_region_code(obj: Any) -> str:
        return str(obj.region_id)


class OrganizationIn(Schema):
    uscc: str
    name: str
    kinds: list[str]
    region_code: str
    address: str = ""
    contact_phone: str = ""


class OrganizationPatch(Schema):
    name: str | None = None
    address: str | None = None
    contact_phone: str | None = None
    kinds: list[str] | None = None


class PlaceOut(Schema):
    id: int
    key: str
    name: str
    kind: str
    region_code: str
    address: str
    lat: float | None
    lon: float | None
    operator_id: int

    @staticmethod
    def resolve_region_code(obj: Any) -> str:
        return str(obj.region_id)


class PlaceIn(Schema):
    key: str
    name: str
    kind: str
    region_code: str
    operator_uscc: str
    address: str = ""
    lat: float | None = None
    lon: float | None = None


class InstrumentModelOut(Schema):
    id: int
    maker_id: int
    name: str
    instrument_type: str
    accuracy_class: str
    type_approval_no: str
    params: dict[str, Any]

    @staticmethod
    def resolve_instrument_type(obj: Any) -> str:
        return str(obj.instrument_type_id)


class InstrumentOut(Schema):
    id: int
    device_id: str
    serial: str
    instrument_type: str
    model: str
    model_id: int
    maker_id: int
    owner_id: int
    place_id: int | None
    region_code: str
    status: str
    accuracy_class: str
    params: dict[str, Any]
    install_date: dt.date | None
    tank: str
    sw_id: str
    sw_hash: str
    public_key_hex: str
    last_verified_on: dt.date | None
    last_verification_conforming: bool | None
    valid_until: dt.date | None

    @staticmethod
    def resolve_instrument_type(obj: Any) -> str:
        return str(obj.instrument_type_id)

    @staticmethod
    def resolve_model(obj: Any) -> str:
        return str(obj.model.name)

    @staticmethod
    def resolve_region_code(obj: Any) -> str:
        return str(obj.region_id)


class InstrumentIn(Schema):
    device_id: str
    instrument_type: str
    maker_uscc: str
    model: str
    serial: str
    owner_uscc: str
    place_key: str = ""
    status: str
    accuracy_class: str = ""
    params: dict[str, float] | None = None
    install_date: dt.date | None = None
    tank: str = ""
    sw_id: str = ""
    sw_hash: str = ""
    public_key_hex: str = ""


class InstrumentPatch(Schema):
    status: str | None = None
    place_key: str | None = None
    install_date: dt.date | None = None
    sw_id: str | None = None
    sw_hash: str | None = None
    public_key_hex: str | None = None
    params: dict[str, float] | None = None
    tank: str | None = None


class ImportOut(Schema):
    kind: str
    created: int
    rejected: int
    problems: list[dict[str, Any]]


@router.get("/regions", response={200: list[RegionOut], **ERRORS}, summary="GB/T 2260 regions (public reference)")
def list_regions(request: HttpRequest) -> Any:
    return list(selectors.region_list())


@router.get("/instrument-types", response={200: list[InstrumentTypeOut], **ERRORS},
            summary="The instrument catalogue with verification modes")
def list_instrument_types(request: HttpRequest) -> Any:
    return list(selectors.instrument_type_list())


@router.get("/organizations", response={200: Page[OrganizationOut], **ERRORS})
def list_organizations(request: HttpRequest, q: str = "", kind: str = "", region: str = "",
                       limit: int | None = None, offset: int | None = None) -> Any:
    qs = selectors.organization_list(principal=principal(request), q=q, kind=kind, region=region)
    return paginate(qs, limit, offset)


@router.get("/organizations/{org_id}", response={200: OrganizationOut, **ERRORS})
def get_organization(request: HttpRequest, org_id: int) -> Any:
    return selectors.organization_get(principal=principal(request), pk=org_id)


@router.post("/organizations", response={201: OrganizationOut, **ERRORS})
def create_organization(request: HttpRequest, payload: OrganizationIn) -> Any:
    return Status(201, services.organization_create(actor=principal(request), values=payload.dict()))


@router.patch("/organizations/{org_id}", response={200: OrganizationOut, **ERRORS})
def update_organization(request: HttpRequest, org_id: int, payload: OrganizationPatch) -> Any:
    return services.organization_update(actor=principal(request), organization_id=org_id,
                                        **payload.dict(exclude_unset=True))


@router.get("/places", response={200: Page[PlaceOut], **ERRORS})
def list_places(request: HttpRequest, q: str = "", kind: str = "", region: str = "",
                limit: int | None = None, offset: int | None = None) -> Any:
    return paginate(selectors.place_list(principal=principal(request), q=q, kind=kind, region=region), limit, offset)


@router.get("/places/{place_id}", response={200: PlaceOut, **ERRORS})
def get_place(request: HttpRequest, place_id: int) -> Any:
    return selectors.place_get(principal=principal(request), pk=place_id)


@router.post("/places", response={201: PlaceOut, **ERRORS})
def create_place(request: HttpRequest, payload: PlaceIn) -> Any:
    return Status(201, services.place_create(actor=principal(request), values=payload.dict()))


@router.get("/instrument-models", response={200: Page[InstrumentModelOut], **ERRORS})
def list_instrument_models(request: HttpRequest, instrument_type: str = "", limit: int | None = None,
                           offset: int | None = None) -> Any:
    qs = selectors.instrument_model_list(principal=principal(request), instrument_type=instrument_type)
    return paginate(qs, limit, offset)


@router.get("/instruments", response={200: Page[InstrumentOut], **ERRORS})
def list_instruments(request: HttpRequest, q: str = "", instrument_type: str = "", status: str = "",
                     region: str = "", owner_id: int | None = None, place_id: int | None = None,
                     limit: int | None = None, offset: int | None = None) -> Any:
    f = InstrumentFilters(q=q, instrument_type=instrument_type, status=status, region=region, owner_id=owner_id,
                          place_id=place_id)
    return paginate(selectors.instrument_list(principal=principal(request), filters=f), limit, offset)


@router.get("/instruments/{instrument_id}", response={200: InstrumentOut, **ERRORS})
def get_instrument(request: HttpRequest, instrument_id: int) -> Any:
    return selectors.instrument_get(principal=principal(request), pk=instrument_id)


@router.post("/instruments", response={201: InstrumentOut, **ERRORS})
def create_instrument(request: HttpRequest, payload: InstrumentIn) -> Any:
    return Status(201, services.instrument_create(actor=principal(request), values=payload.dict()))


@router.patch("/instruments/{instrument_id}", response={200: InstrumentOut, **ERRORS})
def update_instrument(request: HttpRequest, instrument_id: int, payload: InstrumentPatch) -> Any:
    return services.instrument_update(actor=principal(request), instrument_id=instrument_id,
                                      **payload.dict(exclude_unset=True))


@router.post("/import/{kind}", response={200: ImportOut, **ERRORS},
             summary="Bulk import (SPEC 3.5): CSV, XLSX or JSON; all or nothing unless skip_invalid")
def bulk_import(request: HttpRequest, kind: str, file: File[UploadedFile],
                skip_invalid: Form[bool] = False) -> Any:
    from jiliang.config.importers import importers

    available = importers()
    if kind not in available:
        raise JiliangError(f"unknown import kind {kind!r} (use {', '.join(available)})", code="not_found",
                           status=404)
    table = read_table(file.read(), file.name or "upload")
    res = available[kind](table=table, actor=principal(request), skip_invalid=skip_invalid)
    return {"kind": kind, "created": res.created, "rejected": len(res.rejected),
            "problems": [p.as_dict() for p in res.problems]}
