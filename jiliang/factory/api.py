"""Factory verification API (二检合一, ``/api/v1/factory/…``) and the public authorization list
(``/api/v1/public/factory/authorizations``).  Thin handlers: reads through the selectors, writes through the
services and :mod:`jiliang.factory.upload`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile

from jiliang.core.api import ERRORS, Page, paginate, principal
from jiliang.core.errors import JiliangError
from jiliang.factory import selectors, services, upload
from jiliang.registry.tabular import read_table

router = Router(tags=["factory"])
public_router = Router(tags=["public"])


class AuthorizationIn(Schema):
    manufacturer_id: int
    conditions: dict[str, str]
    registered_metrologists: int
    scope: list[dict[str, Any]]


class AuthorizationOut(Schema):
    id: int
    manufacturer_id: int
    number: str
    status: str
    conditions: dict[str, Any]
    registered_metrologists: int
    scope: list[dict[str, Any]]
    applied_on: dt.date
    valid_from: dt.date | None
    valid_until: dt.date | None
    renewal_requested: bool
    published: bool
    reason: str
    penalty_stage: str
    failures: int
    stopped_models: list[int]


class TransitionIn(Schema):
    event: str
    note: str = ""


class RectificationIn(Schema):
    passed: bool
    note: str = ""


class PublicAuthorizationOut(Schema):
    id: int
    number: str
    manufacturer: str
    uscc: str
    scope: list[str]
    valid_from: dt.date | None
    valid_until: dt.date | None
    status: str
    penalty_stage: str
    failures: int
    sales_stopped: bool
    reason: str


class UploadOut(Schema):
    upload_id: int | None
    created: int
    unchanged: int
    rejected: int
    problems: list[dict[str, Any]]


class UnitOut(Schema):
    id: int
    manufacturer_id: int
    model_id: int
    name: str
    size_dn: int
    serial: str
    accuracy_class: str
    batch: str
    production_date: dt.date
    verification_date: dt.date
    valid_until: dt.date | None
    conforming: bool
    institution: str
    status: str
    lot_id: int | None
    utility_id: int | None


class BatchOut(Schema):
    manufacturer_id: int
    model: str
    batch: str
    point: str
    n: int
    mean: float
    std: float
    p_value: float | None
    mpe: float
    consistent_with_zero: bool
    drifting: bool


class LotIn(Schema):
    manufacturer_id: int
    utility_id: int
    lot_no: str
    serials: list[str]


class LotOut(Schema):
    id: int
    manufacturer_id: int
    utility_id: int
    model_id: int
    lot_no: str
    size: int
    status: str
    delivered_on: dt.date


class InstallIn(Schema):
    manufacturer_id: int
    serial: str
    install_date: dt.date
    reading: float
    address: str = ""
    place_key: str = ""


class InstallOut(Schema):
    serial: str
    status: str
    instrument_id: int | None
    device_id: str

    @staticmethod
    def resolve_device_id(obj: Any) -> str:
        return str(obj.instrument.device_id) if obj.instrument_id else ""


class SamplingIn(Schema):
    lot_id: int
    aql: str = services.DEFAULT_AQL
    level: str = services.DEFAULT_LEVEL
    seed: str | None = None


class SamplingOut(Schema):
    id: int
    lot_id: int
    aql: str
    level: str
    n: int
    ac: int
    re: int
    seed: str
    selected: list[str]
    defectives: int
    outcome: str


class ResultsIn(Schema):
    results: dict[str, list[dict[str, Any]]]


class RecallIn(Schema):
    manufacturer_id: int
    model_id: int
    batch: str
    reason: str


class RecallOut(Schema):
    id: int
    manufacturer_id: int
    model_id: int
    batch: str
    reason: str
    units: int
    replaced: int
    opened_on: dt.date


class ReplaceIn(Schema):
    serial: str
    replacement_serial: str


# ----------------------------------------------------------------------------------------- authorizations

@public_router.get("/public/factory/authorizations", auth=None, response={200: list[PublicAuthorizationOut]},
                   summary="Public list of factory-verification authorizations (二检合一授权公示), no sign-in")
def public_authorizations(request: HttpRequest) -> Any:
    return selectors.public_authorizations()


@router.get("/factory/authorizations", response={200: Page[AuthorizationOut], **ERRORS})
def list_authorizations(request: HttpRequest, limit: int | None = None, offset: int | None = None) -> Any:
    return paginate(selectors.authorization_list(principal=principal(request)), limit, offset)


@router.post("/factory/authorizations", response={201: AuthorizationOut, **ERRORS},
             summary="A manufacturer applies for the factory-verification authorization")
def apply_authorization(request: HttpRequest, payload: AuthorizationIn) -> Any:
    return Status(201, services.authorization_apply(actor=principal(request), **payload.dict()))


@router.post("/factory/authorizations/{auth_id}/transition", response={200: AuthorizationOut, **ERRORS},
             summary="assess, grant, reject, apply_renewal, renew, suspend, reinstate or revoke")
def transition_authorization(request: HttpRequest, auth_id: int, payload: TransitionIn) -> Any:
    return services.authorization_transition(actor=principal(request), authorization_id=auth_id,
                                             event=payload.event, note=payload.note)


@router.post("/factory/authorizations/{auth_id}/rectification", response={200: AuthorizationOut, **ERRORS},
             summary="The regulator's verdict on an ordered rectification (penalty ladder)")
def record_rectification(request: HttpRequest, auth_id: int, payload: RectificationIn) -> Any:
    return services.rectification_record(actor=principal(request), authorization_id=auth_id, passed=payload.passed,
                                         note=payload.note)


# ------------------------------------------------------------------------------------------------- units

def _upload_out(res: upload.UploadResult) -> dict[str, Any]:
    return {"upload_id": res.upload_id, "created": res.created, "unchanged": res.unchanged,
            "rejected": res.rejected, "problems": [p.as_dict() for p in res.problems[:upload.MAX_DETAILS]]}


@router.post("/factory/units", response={200: UploadOut, **ERRORS},
             summary="Upload factory verification data: a JSON array or NDJSON (application/x-ndjson)",
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                 "application/x-ndjson": {"schema": {"type": "string"}}}}})
def upload_units(request: HttpRequest, skip_invalid: bool = False) -> Any:
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise JiliangError("the body is too large for one request; send batches or upload a file to "
                           "/api/v1/factory/units/file", code="too_large", status=413) from exc
    if "ndjson" in (request.content_type or ""):
        return _upload_out(upload.upload_ndjson(actor=principal(request), body=body, skip_invalid=skip_invalid))
    else:
        records, rows = upload.parse_json_array(body)
        source = "api:json"
    return _upload_out(upload.upload_units(actor=principal(request), records=records, rows=rows, source=source,
                                           skip_invalid=skip_invalid))


@router.post("/factory/units/file", response={200: UploadOut, **ERRORS},
             summary="Upload factory verification data as a file: CSV, XLSX, JSON or NDJSON")
def upload_units_file(request: HttpRequest, file: File[UploadedFile], skip_invalid: Form[bool] = False) -> Any:
    name = file.name or "upload"
    data = file.read()
    if Path(name).suffix.lower() == ".ndjson":
        return _upload_out(upload.upload_ndjson(actor=principal(request), body=data, source="file:ndjson",
                                                skip_invalid=skip_invalid))
    else:
        records, rows = upload.table_records(read_table(data, name))
    return _upload_out(upload.upload_units(actor=principal(request), records=records, rows=rows,
                                           source=f"file:{Path(name).suffix.lower()[1:]}", skip_invalid=skip_invalid))


@router.get("/factory/units", response={200: Page[UnitOut], **ERRORS})
def list_units(request: HttpRequest, batch: str = "", serial: str = "", limit: int | None = None,
               offset: int | None = None) -> Any:
    qs = selectors.unit_list(principal=principal(request))
    if batch:
        qs = qs.filter(batch=batch)
    if serial:
        qs = qs.filter(serial=serial)
    return paginate(qs, limit, offset)


@router.get("/factory/batches", response={200: list[BatchOut], **ERRORS},
            summary="Batch statistics per model and test point: mean error, std, t-test of mean = 0")
def list_batches(request: HttpRequest, manufacturer_id: int | None = None) -> Any:
    rows = selectors.batch_stats(principal=principal(request), manufacturer_id=manufacturer_id)
    return [{"manufacturer_id": r.manufacturer_id, "model": r.model, "batch": r.batch, "point": r.point,
             "n": r.test.n, "mean": r.test.mean, "std": r.test.std,
             "p_value": None if r.test.p_value != r.test.p_value else r.test.p_value, "mpe": r.mpe,
             "consistent_with_zero": r.test.consistent_with_zero, "drifting": r.test.drifting} for r in rows]


@router.post("/factory/units/install", response={200: InstallOut, **ERRORS},
             summary="A utility registers the installation of an accepted, verified unit")
def install_unit(request: HttpRequest, payload: InstallIn) -> Any:
    return services.unit_install(actor=principal(request), **payload.dict())


# ----------------------------------------------------------------------------------------- lots, sampling

@router.get("/factory/lots", response={200: Page[LotOut], **ERRORS})
def list_lots(request: HttpRequest, limit: int | None = None, offset: int | None = None) -> Any:
    return paginate(selectors.lot_list(principal=principal(request)), limit, offset)


@router.post("/factory/lots", response={201: LotOut, **ERRORS}, summary="Deliver verified units to a utility")
def deliver_lot(request: HttpRequest, payload: LotIn) -> Any:
    return Status(201, services.lot_deliver(actor=principal(request), **payload.dict()))


@router.post("/factory/lots/{lot_id}/accept", response={200: LotOut, **ERRORS},
             summary="The receiving utility accepts a lot (验收登记)")
def accept_lot(request: HttpRequest, lot_id: int) -> Any:
    return services.lot_accept(actor=principal(request), lot_id=lot_id)


@router.post("/factory/samplings", response={201: SamplingOut, **ERRORS},
             summary="Order pre-installation supervisory sampling of a lot: GB/T 2828.1 plan and seeded draw")
def open_sampling(request: HttpRequest, payload: SamplingIn) -> Any:
    return Status(201, services.sampling_open(actor=principal(request), **payload.dict()))


@router.post("/factory/samplings/{sampling_id}/results", response={200: SamplingOut, **ERRORS},
             summary="Record the drawn units' results; a failure returns the lot and climbs the penalty ladder")
def record_sampling(request: HttpRequest, sampling_id: int, payload: ResultsIn) -> Any:
    return services.sampling_record(actor=principal(request), sampling_id=sampling_id, results=payload.results)


# --------------------------------------------------------------------------------------------------- recalls

@router.get("/factory/recalls", response={200: Page[RecallOut], **ERRORS})
def list_recalls(request: HttpRequest, limit: int | None = None, offset: int | None = None) -> Any:
    return paginate(selectors.recall_list(principal=principal(request)), limit, offset)


@router.post("/factory/recalls", response={201: RecallOut, **ERRORS},
             summary="Recall the units of a batch with systematic error")
def open_recall(request: HttpRequest, payload: RecallIn) -> Any:
    return Status(201, services.recall_open(actor=principal(request), **payload.dict()))


@router.post("/factory/recalls/{recall_id}/replace", response={200: RecallOut, **ERRORS},
             summary="Record the replacement of a recalled unit")
def replace_unit(request: HttpRequest, recall_id: int, payload: ReplaceIn) -> Any:
    return services.recall_replace(actor=principal(request), recall_id=recall_id, **payload.dict())
