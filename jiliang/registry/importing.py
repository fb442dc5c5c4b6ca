"""Bulk import of organisations, places and instruments (SPEC 3.5).

Every row is validated before anything is written.  With problems, the import is refused with every
problem listed (row, field, reason) and the database unchanged; with ``skip_invalid`` the good rows are
written and the rejected ones returned so the caller can save them.  Writes happen in one transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from jiliang.accounts.roles import Scope
from jiliang.core import bulk
from jiliang.core.changelog import actor_fields
from jiliang.core.context import current_request_id
from jiliang.core.errors import JiliangError, Problem
from jiliang.core.models import ChangeLog
from jiliang.engine.uscc import UsccResult, validate_uscc
from jiliang.registry import policy
from jiliang.registry.catalogue import catalogue_entries
from jiliang.registry.choices import InstrumentStatus, OrgKind, PlaceKind
from jiliang.registry.models import (
    Instrument,
    InstrumentModel,
    Organization,
    OrganizationKind,
    Place,
    Region,
    new_qr_token,
)
from jiliang.registry.tabular import Table, check_columns

KINDS = ("organizations", "places", "instruments")

COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "organizations": (("uscc", "name", "kinds", "region_code"), ("address", "contact_phone")),
    "places": (("key", "name", "kind", "region_code", "operator_uscc"), ("address", "lat", "lon")),
    "instruments": (
        ("device_id", "instrument_type", "maker_uscc", "model", "serial", "owner_uscc", "place_key", "status"),
        ("accuracy_class", "params", "install_date", "tank", "sw_id", "sw_hash", "public_key_hex"),
    ),
}

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_PHONE_RE = re.compile(r"^[0-9+()\- ]{5,40}$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_ORG_KINDS = set(OrgKind.values)
_PLACE_KINDS = set(PlaceKind.values)
_STATUSES = set(InstrumentStatus.values)


@dataclass
class ImportResult:
    kind: str
    created: int = 0
    rejected: list[tuple[int, dict[str, str], list[Problem]]] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [p for _, _, ps in self.rejected for p in ps]


class _RowCheck:
    """Collects the problems of one row."""

    def __init__(self, row: int, values: dict[str, str]) -> None:
        self.row = row
        self.values = values
        self.problems: list[Problem] = []

    def get(self, name: str) -> str:
        return self.values.get(name, "") or ""

    def fail(self, fieldname: str, reason: str) -> None:
        v = self.values.get(fieldname)
        self.problems.append(Problem(row=self.row, field=fieldname, reason=reason, value=(v[:80] if v else None)))

    def required(self, name: str, max_len: int) -> str:
        v = self.get(name)
        if not v:
            self.fail(name, "required value is empty")
        elif len(v) > max_len:
            self.fail(name, f"longer than {max_len} characters")
        return v

    def optional(self, name: str, max_len: int) -> str:
        v = self.get(name)
        if len(v) > max_len:
            self.fail(name, f"longer than {max_len} characters")
        return v

    def uscc(self, name: str) -> str:
        v = self.get(name)
        if not v:
            self.fail(name, "required value is empty")
            return v
        res = _uscc_result(v)
        if not res.ok:
            self.fail(name, res.message_en + f" ({res.message})")
        return v


@functools.lru_cache(maxsize=100_000)
def _uscc_result(code: str) -> UsccResult:
    """Credit codes repeat on almost every row (20 makers, a few owners): check each distinct code once."""
    return validate_uscc(code)


def _region_codes() -> set[str]:
    return set(Region.objects.values_list("code", flat=True))


def _prevalidate(table: Table, kind: str) -> list[Problem]:
    required, optional = COLUMNS[kind]
    return check_columns(table, required, optional)


def _width_problem(row: int, values: dict[str, str]) -> list[Problem]:
    if "__width__" in values:
        return [Problem(row=row, field=None, reason=values["__width__"])]
    return []


def row_checks(table: Table, checks: list[tuple[_RowCheck, Any]],
               progress: Callable[[int], None] | None = None) -> Iterator[_RowCheck]:
    """The table's rows as checks to fill in.  A row that could not even be read (a ragged CSV line, a JSON
    value that is not an object) is recorded as rejected here and not yielded."""
    for n, (row, values) in enumerate(table.rows):
        if progress is not None and n % 10000 == 0:
            progress(n)
        chk = _RowCheck(row, values)
        chk.problems += _width_problem(row, values)
        if chk.problems:
            checks.append((chk, None))
            continue
        yield chk


def _finish(kind: str, table: Table, checks: list[tuple[_RowCheck, Any]], skip_invalid: bool
            ) -> tuple[ImportResult, list[Any]]:
    result = ImportResult(kind=kind)
    good: list[Any] = []
    for chk, clean in checks:
        if chk.problems:
            result.rejected.append((chk.row, chk.values, chk.problems))
        else:
            good.append(clean)
    if result.rejected and not skip_invalid:
        n = len(result.rejected)
        raise JiliangError(
            f"{kind}: {n} of {len(table.rows)} rows are invalid; nothing was imported",
            code="validation_failed", details=result.problems,
        )
    return result, good


def _changelog_rows(model_label: tuple[str, str], items: Iterable[tuple[int, str, dict[str, Any]]],
                    actor: Any) -> Iterable[list[Any]]:
    at = timezone.now()
    rid = current_request_id()
    actor_id, actor_label = actor_fields(actor)
    app_label, model = model_label
    for pk, rep, after in items:
        yield [at, "create", app_label, model, str(pk), rep[:200], actor_id, actor_label, rid, None, after]


_CL_COLUMNS = ("at", "action", "app_label", "model", "object_id", "object_repr", "actor_id", "actor_label",
               "request_id", "before", "after")


def _write_changelog(model_label: tuple[str, str], items: list[tuple[int, str, dict[str, Any]]], actor: Any) -> None:
    ids = bulk.allocate_ids(ChangeLog, len(items))
    rows = (
        [i, *r] for i, r in zip(ids, _changelog_rows(model_label, items, actor), strict=True)
    )
    bulk.insert_rows(ChangeLog, ("id", *_CL_COLUMNS), rows)
    bulk.bump_sequence(ChangeLog)


# --------------------------------------------------------------------------------------------- organizations

def import_organizations(*, table: Table, actor: Any, skip_invalid: bool = False) -> ImportResult:
    scope = Scope.of(actor)
    header = _prevalidate(table, "organizations")
    if header:
        raise JiliangError("organizations: the header row is wrong", code="validation_failed", details=header)
    regions = _region_codes()
    existing = set(Organization.objects.filter(uscc__in=[v.get("uscc", "") for _, v in table.rows])
                   .values_list("uscc", flat=True))
    seen: dict[str, int] = {}
    checks: list[tuple[_RowCheck, Any]] = []
    for chk in row_checks(table, checks):
        row = chk.row
        uscc = chk.uscc("uscc")
        if uscc in existing:
            chk.fail("uscc", "an organization with this credit code is already registered")
        elif uscc and uscc in seen:
            chk.fail("uscc", f"duplicate of row {seen[uscc]} in this file")
        elif uscc:
            seen[uscc] = row
        name = chk.required("name", 200)
        kinds = [k.strip() for k in chk.get("kinds").split(";") if k.strip()]
        if not kinds:
            chk.fail("kinds", "at least one kind is required")
        bad = [k for k in kinds if k not in _ORG_KINDS]
        if bad:
            chk.fail("kinds", f"unknown kind {', '.join(bad)} (allowed: {', '.join(sorted(_ORG_KINDS))})")
        region = chk.required("region_code", 6)
        if region and region not in regions:
            chk.fail("region_code", "unknown GB/T 2260 region code")
        elif region and not policy.may_write_in_region(scope, region_code=region):
            chk.fail("region_code", "outside the region you may register in")
        address = chk.optional("address", 300)
        phone = chk.optional("contact_phone", 40)
        if phone and not _PHONE_RE.match(phone):
            chk.fail("contact_phone", "not a telephone number")
        checks.append((chk, (uscc, name, sorted(set(kinds)), region, address, phone)))
    result, good = _finish("organizations", table, checks, skip_invalid)
    with transaction.atomic():
        ids = bulk.allocate_ids(Organization, len(good))
        now = timezone.now()
        bulk.insert_rows(
            Organization, ("id", "uscc", "name", "region_id", "address", "contact_phone", "created_at", "updated_at"),
            ([i, u, n, r, a, p, now, now] for i, (u, n, _, r, a, p) in zip(ids, good, strict=True)),
        )
        bulk.bump_sequence(Organization)
        kind_ids = bulk.allocate_ids(OrganizationKind, sum(len(g[2]) for g in good))
        kind_rows = [(oid, k) for oid, g in zip(ids, good, strict=True) for k in g[2]]
        bulk.insert_rows(OrganizationKind, ("id", "organization_id", "kind"),
                         ([kid, oid, k] for kid, (oid, k) in zip(kind_ids, kind_rows, strict=True)))
        bulk.bump_sequence(OrganizationKind)
        _write_changelog(("registry", "organization"), [
            (i, n, {"id": i, "uscc": u, "name": n, "region_id": r, "address": a, "contact_phone": p, "kinds": k})
            for i, (u, n, k, r, a, p) in zip(ids, good, strict=True)
        ], actor)
    result.created = len(good)
    return result


# ---------------------------------------------------------------------------------------------------- places

def _float(chk: _RowCheck, name: str, lo: float, hi: float) -> float | None:
    v = chk.get(name)
    if not v:
        return None
    try:
        f = float(v)
    except ValueError:
        chk.fail(name, "not a number")
        return None
    if not lo <= f <= hi:
        chk.fail(name, f"must be between {lo} and {hi}")
        return None
    return f


def import_places(*, table: Table, actor: Any, skip_invalid: bool = False) -> ImportResult:
    scope = Scope.of(actor)
    header = _prevalidate(table, "places")
    if header:
        raise JiliangError("places: the header row is wrong", code="validation_failed", details=header)
    regions = _region_codes()
    orgs = dict(Organization.objects.values_list("uscc", "id"))
    keys = [v.get("key", "") for _, v in table.rows]
    existing = set(Place.objects.filter(key__in=keys).values_list("key", flat=True))
    seen: dict[str, int] = {}
    checks: list[tuple[_RowCheck, Any]] = []
    for chk in row_checks(table, checks):
        row = chk.row
        key = chk.required("key", 64)
        if key and not _KEY_RE.match(key):
            chk.fail("key", "use letters, digits and . _ : - only")
        elif key in existing:
            chk.fail("key", "a place with this key is already registered")
        elif key in seen:
            chk.fail("key", f"duplicate of row {seen[key]} in this file")
        elif key:
            seen[key] = row
        name = chk.required("name", 200)
        kind = chk.required("kind", 20)
        if kind and kind not in _PLACE_KINDS:
            chk.fail("kind", f"unknown place kind (allowed: {', '.join(sorted(_PLACE_KINDS))})")
        region = chk.required("region_code", 6)
        if region and region not in regions:
            chk.fail("region_code", "unknown GB/T 2260 region code")
        op_uscc = chk.uscc("operator_uscc")
        op_id = orgs.get(op_uscc)
        if op_uscc and op_id is None and not any(p.field == "operator_uscc" for p in chk.problems):
            chk.fail("operator_uscc", "no organization with this credit code is registered")
        if region in regions and not policy.may_write_in_region(scope, region_code=region, operator_id=op_id):
            chk.fail("region_code", "outside the region you may register in")
        address = chk.optional("address", 300)
        lat = _float(chk, "lat", -90, 90)
        lon = _float(chk, "lon", -180, 180)
        checks.append((chk, (key, name, kind, region, address, lat, lon, op_id)))
    result, good = _finish("places", table, checks, skip_invalid)
    cols = ("key", "name", "kind", "region_id", "address", "lat", "lon", "operator_id")
    with transaction.atomic():
        ids = bulk.allocate_ids(Place, len(good))
        now = timezone.now()
        bulk.insert_rows(Place, ("id", *cols, "created_at", "updated_at"),
                         ([i, *g, now, now] for i, g in zip(ids, good, strict=True)))
        bulk.bump_sequence(Place)
        _write_changelog(("registry", "place"), [
            (i, g[1], {"id": i, **dict(zip(cols, g, strict=True))}) for i, g in zip(ids, good, strict=True)
        ], actor)
    result.created = len(good)
    return result


# ----------------------------------------------------------------------------------------------- instruments

_TYPES = {e["key"]: e for e in catalogue_entries()}


def _parse_date(chk: _RowCheck, name: str, today: dt.date) -> dt.date | None:
    v = chk.get(name)
    if not v:
        return None
    try:
        d = dt.date.fromisoformat(v[:10]) if len(v) in (10, 19, 20, 25) else dt.date.fromisoformat(v)
    except ValueError:
        chk.fail(name, "not a date (use YYYY-MM-DD)")
        return None
    if d > today:
        chk.fail(name, "date lies in the future")
    return d


def _parse_params(chk: _RowCheck, name: str) -> dict[str, Any]:
    v = chk.get(name)
    if not v:
        return {}
    try:
        obj = orjson.loads(v)
    except orjson.JSONDecodeError:
        chk.fail(name, "not valid JSON (expected an object such as {\"e_g\": 5, \"max_g\": 15000})")
        return {}
    if not isinstance(obj, dict):
        chk.fail(name, "must be a JSON object")
        return {}
    for k, val in obj.items():
        if not isinstance(val, int | float) or isinstance(val, bool):
            chk.fail(name, f"parameter {k!r} must be a number")
    return obj


def import_instruments(*, table: Table, actor: Any, skip_invalid: bool = False,
                       progress: Callable[[int], None] | None = None) -> ImportResult:
    scope = Scope.of(actor)
    header = _prevalidate(table, "instruments")
    if header:
        raise JiliangError("instruments: the header row is wrong", code="validation_failed", details=header)
    orgs: dict[str, int] = dict(Organization.objects.values_list("uscc", "id"))
    org_region: dict[int, str] = dict(Organization.objects.values_list("id", "region_id"))
    makers = set(OrganizationKind.objects.filter(kind=OrgKind.MANUFACTURER).values_list("organization_id", flat=True))
    places: dict[str, tuple[int, str]] = {k: (i, r) for k, i, r in Place.objects.values_list("key", "id", "region_id")}
    models_by_key: dict[tuple[int, str, str, str], int] = {
        (m, n, t, c): i for i, m, n, t, c in
        InstrumentModel.objects.values_list("id", "maker_id", "name", "instrument_type_id", "accuracy_class")
    }
    existing_devices = bulk.existing_values(Instrument, "device_id", [v.get("device_id", "") for _, v in table.rows])
    # (maker_id, serial) is the unique key: ask per maker so the query uses that index.
    serials_by_maker: dict[int, list[str]] = {}
    for _, v in table.rows:
        maker = orgs.get(v.get("maker_uscc", ""))
        if maker is not None:
            serials_by_maker.setdefault(maker, []).append(v.get("serial", ""))
    existing_serials = {(m, s) for m, ss in serials_by_maker.items()
                        for s in bulk.existing_values(Instrument, "serial", ss, where={"maker_id": m})}
    today = timezone.localdate()
    seen_dev: dict[str, int] = {}
    seen_serial: dict[tuple[int, str], int] = {}
    checks: list[tuple[_RowCheck, Any]] = []
    for chk in row_checks(table, checks, progress):
        row = chk.row
        device_id = chk.required("device_id", 64)
        if device_id and not _KEY_RE.match(device_id):
            chk.fail("device_id", "use letters, digits and . _ : - only")
        elif device_id in existing_devices:
            chk.fail("device_id", "an instrument with this device_id is already registered")
        elif device_id in seen_dev:
            chk.fail("device_id", f"duplicate of row {seen_dev[device_id]} in this file")
        elif device_id:
            seen_dev[device_id] = row
        itype = chk.required("instrument_type", 30)
        tinfo = _TYPES.get(itype)
        if itype and tinfo is None:
            chk.fail("instrument_type", f"unknown instrument type (allowed: {', '.join(_TYPES)})")
        maker_uscc = chk.uscc("maker_uscc")
        maker_id = orgs.get(maker_uscc)
        if maker_uscc and maker_id is None and not any(p.field == "maker_uscc" for p in chk.problems):
            chk.fail("maker_uscc", "no organization with this credit code is registered")
        elif maker_id is not None and maker_id not in makers:
            chk.fail("maker_uscc", "this organization is not registered as a manufacturer")
        model_name = chk.required("model", 100)
        serial = chk.required("serial", 64)
        if maker_id is not None and serial:
            if (maker_id, serial) in existing_serials:
                chk.fail("serial", "this maker's serial number is already registered")
            elif (maker_id, serial) in seen_serial:
                chk.fail("serial", f"duplicate serial of this maker, see row {seen_serial[(maker_id, serial)]}")
            else:
                seen_serial[(maker_id, serial)] = row
        owner_uscc = chk.uscc("owner_uscc")
        owner_id = orgs.get(owner_uscc)
        if owner_uscc and owner_id is None and not any(p.field == "owner_uscc" for p in chk.problems):
            chk.fail("owner_uscc", "no organization with this credit code is registered")
        status = chk.required("status", 12)
        if status and status not in _STATUSES:
            chk.fail("status", f"unknown status (allowed: {', '.join(InstrumentStatus.values)})")
        place_key = chk.get("place_key")
        place = places.get(place_key) if place_key else None
        if place_key and place is None:
            chk.fail("place_key", "no place with this key is registered")
        elif not place_key and status and status != InstrumentStatus.IN_STOCK:
            chk.fail("place_key", "required unless the status is in_stock")
        accuracy_class = chk.optional("accuracy_class", 10)
        if tinfo is not None and accuracy_class and tinfo["accuracy_classes"] and (
                accuracy_class not in tinfo["accuracy_classes"]):
            chk.fail("accuracy_class", f"not a class of {itype} (allowed: {', '.join(tinfo['accuracy_classes'])})")
        params = _parse_params(chk, "params")
        install_date = _parse_date(chk, "install_date", today)
        tank = chk.optional("tank", 32)
        if tank and itype and itype != "fuel_dispenser":
            chk.fail("tank", "only a fuel dispenser nozzle draws from a tank")
        sw_id = chk.optional("sw_id", 64)
        sw_hash = chk.optional("sw_hash", 128)
        pub = chk.optional("public_key_hex", 400)
        if pub and not _HEX_RE.match(pub):
            chk.fail("public_key_hex", "must be hexadecimal")
        region = place[1] if place else (org_region.get(owner_id) if owner_id else None)
        if owner_id is not None and region and not policy.may_write_instrument(scope, owner_id=owner_id,
                                                                                region_code=region):
            chk.fail("owner_uscc", "you may not register instruments for this owner or region")
        clean = None
        if not chk.problems:
            clean = (device_id, serial, itype, maker_id, model_name, accuracy_class, owner_id,
                     place[0] if place else None, region, status, params, install_date, tank, sw_id, sw_hash, pub)
        checks.append((chk, clean))
    result, good = _finish("instruments", table, checks, skip_invalid)
    with transaction.atomic():
        # Instrument models are created on first use (SPEC 3.5).
        new_models: dict[tuple[int, str, str, str], dict[str, Any]] = {}
        for g in good:
            key = (g[3], g[4], g[2], g[5])
            if key not in models_by_key and key not in new_models:
                new_models[key] = g[10]
        for (maker_id, name, itype, acc), params in new_models.items():
            m = InstrumentModel.objects.create(maker_id=maker_id, name=name, instrument_type_id=itype,
                                               accuracy_class=acc, params=params)
            models_by_key[(maker_id, name, itype, acc)] = m.pk
        ids = bulk.allocate_ids(Instrument, len(good))
        now = timezone.now()
        cols = ("id", "device_id", "serial", "instrument_type_id", "maker_id", "model_id", "accuracy_class",
                "owner_id", "place_id", "region_id", "status", "params", "install_date", "tank", "sw_id", "sw_hash",
                "public_key_hex", "qr_token", "created_at", "updated_at")
        rows: list[list[Any]] = []
        log_items: list[tuple[int, str, dict[str, Any]]] = []
        for i, g in zip(ids, good, strict=True):
            (device_id, serial, itype, maker_id, model_name, acc, owner_id, place_id, region, status, params,
             install_date, tank, sw_id, sw_hash, pub) = g
            model_id = models_by_key[(maker_id, model_name, itype, acc)]
            r = [i, device_id, serial, itype, maker_id, model_id, acc, owner_id, place_id, region, status, params,
                 install_date, tank, sw_id, sw_hash, pub, new_qr_token(), now, now]
            rows.append(r)
            snap = dict(zip(cols[:17], r[:17], strict=True))
            snap["install_date"] = install_date.isoformat() if install_date else None
            log_items.append((i, device_id, snap))
        bulk.insert_rows(Instrument, cols, rows)
        bulk.bump_sequence(Instrument)
        _write_changelog(("registry", "instrument"), log_items, actor)
    result.created = len(good)
    return result


IMPORTERS: dict[str, Callable[..., ImportResult]] = {
    "organizations": import_organizations,
    "places": import_places,
    "instruments": import_instruments,
}


def rejected_as_rows(result: ImportResult) -> list[dict[str, str]]:
    """The rejected rows with an ``errors`` column, for writing back to a file."""
    out = []
    for row, values, problems in result.rejected:
        d = {k: v for k, v in values.items() if not k.startswith("__")}
        d["row"] = str(row)
        d["errors"] = "; ".join(f"{p.field or ''}: {p.reason}" for p in problems)
        out.append(d)
    return out
