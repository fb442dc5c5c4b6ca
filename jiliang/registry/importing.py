"""Bulk import of organisations, places and instruments (SPEC 3.5).

Every row is validated before anything is written.  With problems, the import is refused with every
problem listed (row, field, reason) and the database unchanged; with ``skip_invalid`` the good rows are
written and the rejected ones returned so the caller can save them.  Writes happen in one transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.apps import apps
from django.db import transaction
from django.utils import timezone

from jiliang.accounts.roles import Scope
from jiliang.core import bulk
from jiliang.core.changelog import IMPORT_COLUMNS, import_entries
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
    new_qr_tokens,
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


def _log_import(model: type[Any], ids: list[int], columns: tuple[str, ...], rows: list[list[Any]], actor: Any,
                at: dt.datetime | None = None) -> None:
    """The change log of a bulk creation: ``import`` entries holding every created row (ADR 0009)."""
    if not ids:
        return
    entries = import_entries(model=model, ids=ids, columns=columns, rows=rows, actor=actor, at=at)
    entry_ids = bulk.allocate_ids(ChangeLog, len(entries))
    bulk.insert_rows(ChangeLog, ("id", *IMPORT_COLUMNS), ([i, *e] for i, e in zip(entry_ids, entries, strict=True)))
    bulk.bump_sequence(ChangeLog)


def _write_changelog(model_label: tuple[str, str], items: list[tuple[int, str, dict[str, Any]]], actor: Any) -> None:
    """Log created rows given as (id, label, snapshot) with the same keys in every snapshot."""
    if not items:
        return
    columns = tuple(items[0][2])
    _log_import(apps.get_model(*model_label), [i for i, _, _ in items], columns,
                [[snap.get(c) for c in columns] for _, _, snap in items], actor)


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


@dataclass
class _InstrumentContext:
    """What every instrument row is checked against, loaded once per import (under the table lock)."""

    scope: Scope
    orgs: dict[str, int]
    org_region: dict[int, str]
    makers: set[int]
    places: dict[str, tuple[int, str]]
    existing_devices: set[str]
    existing_serials: set[tuple[int, str]]
    today: dt.date
    # Filled while the rows are screened in file order: value -> row number of its first occurrence.
    first_device: dict[str, int] = field(default_factory=dict)
    first_serial: dict[tuple[str, str], int] = field(default_factory=dict)


def _instrument_context(table: Table, scope: Scope) -> _InstrumentContext:
    orgs: dict[str, int] = dict(Organization.objects.values_list("uscc", "id"))
    existing_devices = bulk.existing_values(Instrument, "device_id", table.column("device_id"))
    # (maker_id, serial) is the unique key: ask per maker so the query uses that index.
    serials_by_maker: dict[int, list[str]] = {}
    for mu, sn in zip(table.column("maker_uscc"), table.column("serial"), strict=True):
        maker = orgs.get(mu)
        if maker is not None:
            serials_by_maker.setdefault(maker, []).append(sn)
    existing_serials = {(m, sn) for m, ss in serials_by_maker.items()
                        for sn in bulk.existing_values(Instrument, "serial", ss, where={"maker_id": m})}
    return _InstrumentContext(
        scope=scope, orgs=orgs, org_region=dict(Organization.objects.values_list("id", "region_id")),
        makers=set(OrganizationKind.objects.filter(kind=OrgKind.MANUFACTURER)
                   .values_list("organization_id", flat=True)),
        places={k: (i, r) for k, i, r in Place.objects.values_list("key", "id", "region_id")},
        existing_devices=existing_devices, existing_serials=existing_serials, today=timezone.localdate(),
    )


_Clean = tuple[str, str, str, int, str, str, int, "int | None", str, str, dict[str, Any], "dt.date | None", str, str,
               str, str]


def _check_instrument(chk: _RowCheck, ctx: _InstrumentContext) -> _Clean | None:
    """One row, every problem named (row, field, reason); the clean values if there is none."""
    row = chk.row
    device_id = chk.required("device_id", 64)
    if device_id and not _KEY_RE.match(device_id):
        chk.fail("device_id", "use letters, digits and . _ : - only")
    elif device_id in ctx.existing_devices:
        chk.fail("device_id", "an instrument with this device_id is already registered")
    elif device_id and ctx.first_device.get(device_id, row) != row:
        chk.fail("device_id", f"duplicate of row {ctx.first_device[device_id]} in this file")
    itype = chk.required("instrument_type", 30)
    tinfo = _TYPES.get(itype)
    if itype and tinfo is None:
        chk.fail("instrument_type", f"unknown instrument type (allowed: {', '.join(_TYPES)})")
    maker_uscc = chk.uscc("maker_uscc")
    maker_id = ctx.orgs.get(maker_uscc)
    if maker_uscc and maker_id is None and not any(p.field == "maker_uscc" for p in chk.problems):
        chk.fail("maker_uscc", "no organization with this credit code is registered")
    elif maker_id is not None and maker_id not in ctx.makers:
        chk.fail("maker_uscc", "this organization is not registered as a manufacturer")
    model_name = chk.required("model", 100)
    serial = chk.required("serial", 64)
    if maker_id is not None and serial:
        first = ctx.first_serial.get((maker_uscc, serial), row)
        if (maker_id, serial) in ctx.existing_serials:
            chk.fail("serial", "this maker's serial number is already registered")
        elif first != row:
            chk.fail("serial", f"duplicate serial of this maker, see row {first}")
    owner_uscc = chk.uscc("owner_uscc")
    owner_id = ctx.orgs.get(owner_uscc)
    if owner_uscc and owner_id is None and not any(p.field == "owner_uscc" for p in chk.problems):
        chk.fail("owner_uscc", "no organization with this credit code is registered")
    status = chk.required("status", 12)
    if status and status not in _STATUSES:
        chk.fail("status", f"unknown status (allowed: {', '.join(InstrumentStatus.values)})")
    place_key = chk.get("place_key")
    place = ctx.places.get(place_key) if place_key else None
    if place_key and place is None:
        chk.fail("place_key", "no place with this key is registered")
    elif not place_key and status and status != InstrumentStatus.IN_STOCK:
        chk.fail("place_key", "required unless the status is in_stock")
    accuracy_class = chk.optional("accuracy_class", 10)
    if tinfo is not None and accuracy_class and tinfo["accuracy_classes"] and (
            accuracy_class not in tinfo["accuracy_classes"]):
        chk.fail("accuracy_class", f"not a class of {itype} (allowed: {', '.join(tinfo['accuracy_classes'])})")
    params = _parse_params(chk, "params")
    install_date = _parse_date(chk, "install_date", ctx.today)
    tank = chk.optional("tank", 32)
    if tank and itype and itype != "fuel_dispenser":
        chk.fail("tank", "only a fuel dispenser nozzle draws from a tank")
    sw_id = chk.optional("sw_id", 64)
    sw_hash = chk.optional("sw_hash", 128)
    pub = chk.optional("public_key_hex", 400)
    if pub and not _HEX_RE.match(pub):
        chk.fail("public_key_hex", "must be hexadecimal")
    region = place[1] if place else (ctx.org_region.get(owner_id) if owner_id else None)
    if owner_id is not None and region and not policy.may_write_instrument(ctx.scope, owner_id=owner_id,
                                                                            region_code=region):
        chk.fail("owner_uscc", "you may not register instruments for this owner or region")
    if chk.problems or maker_id is None or owner_id is None or region is None:
        return None
    return (device_id, serial, itype, maker_id, model_name, accuracy_class, owner_id, place[0] if place else None,
            region, status, params, install_date, tank, sw_id, sw_hash, pub)


class _Memo(dict[Any, Any]):
    """A dictionary that computes missing values (distinct values repeat across rows: check each once)."""

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key: Any) -> Any:
        value = self[key] = self.compute(key)
        return value


class _InstrumentScreen:
    """The fast path (ADR 0009): a row whose values all pass simple look-ups -- the same rules as
    ``_check_instrument``, each distinct value judged once -- is clean; any other row is handed to
    ``_check_instrument``, which names its problems.  Rows are screened in file order, chunk by chunk,
    recording first occurrences for the duplicate checks."""

    def __init__(self, table: Table, ctx: _InstrumentContext) -> None:
        col = table.column
        self.table, self.ctx = table, ctx
        self.devices, self.types, self.maker_u, self.models, self.serials = (
            col("device_id"), col("instrument_type"), col("maker_uscc"), col("model"), col("serial"))
        self.owner_u, self.statuses, self.place_keys, self.classes = (
            col("owner_uscc"), col("status"), col("place_key"), col("accuracy_class"))
        self.params, self.dates, self.tanks, self.sw_ids, self.sw_hashes, self.pubs = (
            col("params"), col("install_date"), col("tank"), col("sw_id"), col("sw_hash"), col("public_key_hex"))
        self.valid_org = {u: i for u, i in ctx.orgs.items() if _uscc_result(u).ok}
        self.maker_ids = {u: i for u, i in self.valid_org.items() if i in ctx.makers}
        self.key_ok = _Memo(lambda d: 0 < len(d) <= 64 and bool(_KEY_RE.match(d)))
        self.class_ok = _Memo(self._class_ok)
        self.parsed_params = _Memo(self._params)
        self.parsed_dates = _Memo(self._date)
        self.may_write = _Memo(lambda k: policy.may_write_instrument(ctx.scope, owner_id=k[0], region_code=k[1]))
        self.hex_ok = _Memo(lambda v: not v or (len(v) <= 400 and bool(_HEX_RE.match(v))))

    @staticmethod
    def _class_ok(key: tuple[str, str]) -> bool:
        t, a = key
        info = _TYPES.get(t)
        if info is None or len(a) > 10:
            return False
        return not a or not info["accuracy_classes"] or a in info["accuracy_classes"]

    @staticmethod
    def _params(v: str) -> tuple[bool, dict[str, Any]]:
        chk = _RowCheck(0, {"params": v})
        obj = _parse_params(chk, "params")
        return not chk.problems, obj

    def _date(self, v: str) -> tuple[bool, dt.date | None]:
        chk = _RowCheck(0, {"d": v})
        d = _parse_date(chk, "d", self.ctx.today)
        return not chk.problems, d

    def model_keys(self) -> dict[tuple[int, str, str, str], dict[str, Any]]:
        """The instrument models the file names, keyed (maker id, name, type, class), each with the
        parameters of its first row whose parameters are valid -- only keys whose own fields are valid."""
        out: dict[tuple[int, str, str, str], dict[str, Any]] = {}
        for mu, m, t, a, p in zip(self.maker_u, self.models, self.types, self.classes, self.params, strict=True):
            maker_id = self.maker_ids.get(mu)
            if maker_id is None or not 0 < len(m) <= 100 or not self.class_ok[(t, a)]:
                continue
            key = (maker_id, m, t, a)
            if key not in out:
                ok, obj = self.parsed_params[p]
                if ok:
                    out[key] = obj
        return out

    def run(self, lo: int, hi: int) -> tuple[list[_Clean], list[int]]:
        """Screen rows ``lo``..``hi - 1``: the clean rows, and the indices of the others."""
        ctx = self.ctx
        devices, types, maker_u, models_, serials = self.devices, self.types, self.maker_u, self.models, self.serials
        owner_u, statuses, place_keys, classes = self.owner_u, self.statuses, self.place_keys, self.classes
        params, dates, tanks, sw_ids, sw_hashes, pubs = (self.params, self.dates, self.tanks, self.sw_ids,
                                                         self.sw_hashes, self.pubs)
        rownums, broken, places, org_region = self.table.rownums, self.table.broken, ctx.places, ctx.org_region
        valid_org, maker_ids = self.valid_org, self.maker_ids
        existing_devices, existing_serials = ctx.existing_devices, ctx.existing_serials
        first_device, first_serial = ctx.first_device, ctx.first_serial
        key_ok, class_ok, may_write, hex_ok = self.key_ok, self.class_ok, self.may_write, self.hex_ok
        parsed_params, parsed_dates = self.parsed_params, self.parsed_dates
        in_stock = InstrumentStatus.IN_STOCK.value
        clean: list[_Clean] = []
        slow: list[int] = []
        for i in range(lo, hi):
            row = rownums[i]
            d, mu, sn = devices[i], maker_u[i], serials[i]
            first_d = first_device.setdefault(d, row)
            first_s = first_serial.setdefault((mu, sn), row)
            t, m, ou, st, pk, a, tk = types[i], models_[i], owner_u[i], statuses[i], place_keys[i], classes[i], tanks[i]
            maker_id = maker_ids.get(mu)
            owner_id = valid_org.get(ou)
            place = places.get(pk) if pk else None
            p_ok, p_obj = parsed_params[params[i]]
            d_ok, d_val = parsed_dates[dates[i]]
            if (maker_id is None or owner_id is None or not p_ok or not d_ok or i in broken or first_d != row
                    or first_s != row or d in existing_devices or not key_ok[d] or not 0 < len(m) <= 100
                    or not 0 < len(sn) <= 64 or (maker_id, sn) in existing_serials or st not in _STATUSES
                    or not class_ok[(t, a)] or (place is None and (pk or st != in_stock))
                    or (tk and (t != "fuel_dispenser" or len(tk) > 32))
                    or len(sw_ids[i]) > 64 or len(sw_hashes[i]) > 128 or not hex_ok[pubs[i]]):
                slow.append(i)
                continue
            region = place[1] if place is not None else org_region[owner_id]
            if not may_write[(owner_id, region)]:
                slow.append(i)
                continue
            clean.append((d, sn, t, maker_id, m, a, owner_id, place[0] if place is not None else None, region, st,
                          p_obj, d_val, tk, sw_ids[i], sw_hashes[i], pubs[i]))
        return clean, slow


_INSTRUMENT_COLUMNS = ("id", "device_id", "serial", "instrument_type_id", "maker_id", "model_id", "accuracy_class",
                       "owner_id", "place_id", "region_id", "status", "params", "install_date", "tank", "sw_id",
                       "sw_hash", "public_key_hex", "qr_token", "created_at", "updated_at")
_LOGGED = 17  # the change log gets the columns up to public_key_hex: never the QR token (a secret)
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_CHUNK = 5_000


def _copy_column(values: Sequence[str]) -> Sequence[str]:
    """A text column in COPY format: escaped only when some value needs it (almost never)."""
    if _NEEDS_ESCAPE.search("".join(values)):
        return [bulk.copy_text(v) for v in values]
    return values


def _copy_text(rows: list[list[Any]], stamp: str, params_text: dict[int, str]) -> str:
    """Instrument rows (``_INSTRUMENT_COLUMNS`` order) as one block of COPY text, formatted column-wise:
    ids, keys and enumerations never need escaping; free-text columns only when they contain a special
    character; rows sharing a ``params`` object (the same text in the file) share its formatting."""
    cols = list(zip(*rows, strict=True))
    ids, device, itype, maker, model, owner, region, status, pub, qr = (
        cols[0], cols[1], cols[3], cols[4], cols[5], cols[7], cols[9], cols[10], cols[16], cols[17])
    serial, acc, tank, sw_id, sw_hash = (_copy_column(cols[k]) for k in (2, 6, 13, 14, 15))
    params = []
    for p in cols[11]:
        text = params_text.get(id(p))
        if text is None:
            text = params_text[id(p)] = bulk.copy_text(orjson.dumps(p).decode())
        params.append(text)
    place = ["\\N" if p is None else str(p) for p in cols[8]]
    date = ["\\N" if d is None else d.isoformat() for d in cols[12]]
    return "".join([
        f"{i}\t{d}\t{s}\t{t}\t{mk}\t{mo}\t{a}\t{ow}\t{pl}\t{rg}\t{st}\t{pa}\t{da}\t{tk}\t{si}\t{sh}\t{pu}\t{q}\t"
        f"{stamp}\t{stamp}\n"
        for i, d, s, t, mk, mo, a, ow, pl, rg, st, pa, da, tk, si, sh, pu, q in zip(
            ids, device, serial, itype, maker, model, acc, owner, place, region, status, params, date, tank, sw_id,
            sw_hash, pub, qr, strict=True)
    ])


def import_instruments(*, table: Table, actor: Any, skip_invalid: bool = False,
                       progress: Callable[[int], None] | None = None) -> ImportResult:
    """``jiliang import instruments``: validate every row; write all of them, or none, in one transaction.

    ADR 0009: rows are screened column-wise against look-ups loaded once (only rows failing a look-up
    go through ``_check_instrument``, which names each problem); on PostgreSQL the clean rows stream into
    COPY from a second thread while the next chunk is screened, so Python and the server work at the
    same time; a bad row stops the writing and the transaction is rolled back at the end, after every
    problem has been found.  The change log gets one ``import`` entry per block of created rows."""
    scope = Scope.of(actor)
    header = _prevalidate(table, "instruments")
    if header:
        raise JiliangError("instruments: the header row is wrong", code="validation_failed", details=header)
    n = len(table)
    result = ImportResult(kind="instruments")
    with transaction.atomic():
        bulk.lock_for_bulk_insert(Instrument)  # the existence checks below then stay true until commit
        ctx = _instrument_context(table, scope)
        screen = _InstrumentScreen(table, ctx)
        models_by_key: dict[tuple[int, str, str, str], int] = {
            (m, nm, t, c): i for i, m, nm, t, c in
            InstrumentModel.objects.values_list("id", "maker_id", "name", "instrument_type_id", "accuracy_class")
        }
        new_models: set[int] = set()
        # Instrument models are created on first use (SPEC 3.5), before the COPY occupies the connection.
        for key, params in screen.model_keys().items():
            if key not in models_by_key:
                pk = InstrumentModel.objects.create(maker_id=key[0], name=key[1], instrument_type_id=key[2],
                                                    accuracy_class=key[3], params=params).pk
                models_by_key[key] = pk
                new_models.add(pk)
        first_id = bulk.allocate_block(Instrument, n)  # row k of the clean rows gets first_id + k
        tokens = new_qr_tokens(n)
        now = timezone.now()
        stamp = bulk.copy_text(now)
        params_text: dict[int, str] = {}
        writer = bulk.CopyWriter() if bulk.is_postgres() else None
        if writer is not None:
            writer.begin(Instrument, _INSTRUMENT_COLUMNS)
        logged: list[list[Any]] = []
        late: list[_Clean] = []  # valid rows whose model the pre-scan did not create (written after the COPY)
        try:
            for lo in range(0, n, _CHUNK):
                hi = min(n, lo + _CHUNK)
                clean, slow = screen.run(lo, hi)
                for i in slow:
                    row, values = table.record(i)
                    chk = _RowCheck(row, values)
                    chk.problems += _width_problem(row, values)
                    c = None if chk.problems else _check_instrument(chk, ctx)
                    if c is None:
                        result.rejected.append((row, values, chk.problems or [
                            Problem(row=row, field=None, reason="the row is incomplete")]))
                    elif (c[3], c[4], c[2], c[5]) not in models_by_key:
                        late.append(c)
                    else:
                        clean.append(c)
                if progress is not None:
                    progress(hi)
                if (result.rejected and not skip_invalid) or not clean:
                    continue  # nothing will be written: keep looking for problems only
                rows = [[first_id + k, g[0], g[1], g[2], g[3], models_by_key[(g[3], g[4], g[2], g[5])], g[5], g[6],
                         g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15], tokens[k], now, now]
                        for k, g in enumerate(clean, start=len(logged))]
                logged += [r[:_LOGGED] for r in rows]
                if writer is not None:
                    writer.write(_copy_text(rows, stamp, params_text))
                else:
                    bulk.insert_rows(Instrument, _INSTRUMENT_COLUMNS, rows)
            if result.rejected and not skip_invalid:
                raise JiliangError(
                    f"instruments: {len(result.rejected)} of {n} rows are invalid; nothing was imported",
                    code="validation_failed", details=result.problems,
                )
            # While the last chunks are still travelling to the server: the change-log entries, which
            # follow them through the same COPY thread (their ids come from the table's identity default).
            entries = import_entries(model=Instrument, ids=[r[0] for r in logged],
                                     columns=_INSTRUMENT_COLUMNS[:_LOGGED], rows=logged, actor=actor, at=now)
            if writer is not None and entries:
                writer.begin(ChangeLog, IMPORT_COLUMNS)
                writer.write("".join("\t".join([bulk.copy_text(v) for v in e]) + "\n" for e in entries))
                entries = []
        except BaseException:
            if writer is not None:
                writer.close(abort=True)
            raise
        if writer is not None:
            writer.close()
        if late:
            late_rows = [r[:_LOGGED] for r in _insert_late(late, models_by_key, new_models, tokens[len(logged):], now)]
            entries += import_entries(model=Instrument, ids=[r[0] for r in late_rows],
                                      columns=_INSTRUMENT_COLUMNS[:_LOGGED], rows=late_rows, actor=actor, at=now)
            logged += late_rows
        bulk.bump_sequence(Instrument)
        unused = new_models - {r[5] for r in logged}
        if unused:  # every row naming the model was rejected (--skip-invalid)
            InstrumentModel.objects.filter(pk__in=unused).delete()
        if entries:
            bulk.insert_rows(ChangeLog, IMPORT_COLUMNS, entries)
    result.created = len(logged)
    return result


def _insert_late(late: list[_Clean], models_by_key: dict[tuple[int, str, str, str], int], new_models: set[int],
                 tokens: list[str], now: dt.datetime) -> list[list[Any]]:
    """Rows the fast path could not place (their model was not created up front): create the models,
    then insert the rows with ordinary ids.  Rare: only when the row-by-row check is more lenient than
    the look-ups."""
    for g in late:
        key = (g[3], g[4], g[2], g[5])
        if key not in models_by_key:
            models_by_key[key] = InstrumentModel.objects.create(
                maker_id=g[3], name=g[4], instrument_type_id=g[2], accuracy_class=g[5], params=g[10]).pk
            new_models.add(models_by_key[key])
    ids = bulk.allocate_ids(Instrument, len(late))
    rows = [[i, g[0], g[1], g[2], g[3], models_by_key[(g[3], g[4], g[2], g[5])], g[5], g[6], g[7], g[8], g[9], g[10],
             g[11], g[12], g[13], g[14], g[15], tokens[k] if k < len(tokens) else new_qr_tokens(1)[0], now, now]
            for k, (i, g) in enumerate(zip(ids, late, strict=True))]
    bulk.insert_rows(Instrument, _INSTRUMENT_COLUMNS, rows)
    return rows


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
