"""``jiliang import verifications`` (SPEC 3.5): device_id, kind, date, institution_uscc, points
[, stage, certificate_no, verifier] -- and, beyond SPEC 3.5, the optional certificate fields standards
(计量标准), temperature_c and humidity_pct (环境条件).

Each row's test points are judged by the MPE engine with the instrument's type, accuracy class and
parameters; the validity follows the type's verification mode.  Same all-or-nothing rules as the registry
import; the instrument's latest verification, result and validity are updated in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from jiliang.accounts.roles import Scope
from jiliang.core import bulk
from jiliang.core.errors import JiliangError
from jiliang.engine.rules import RuleError, evaluate_many, load_tables
from jiliang.engine.validity import valid_until
from jiliang.registry.choices import OrgKind
from jiliang.registry.importing import ImportResult, _finish, _float, _RowCheck, _write_changelog, row_checks
from jiliang.registry.models import Instrument, InstrumentType, Organization, OrganizationKind
from jiliang.registry.tabular import Table, check_columns
from jiliang.verification import policy
from jiliang.verification.models import Stage, Verification, VerificationKind

REQUIRED = ("device_id", "kind", "date", "institution_uscc", "points")
OPTIONAL = ("stage", "certificate_no", "verifier", "standards", "temperature_c", "humidity_pct")
_KINDS = set(VerificationKind.values)
_STAGES = set(Stage.values)


def import_verifications(*, table: Table, actor: Any, skip_invalid: bool = False) -> ImportResult:
    scope = Scope.of(actor)
    header = check_columns(table, REQUIRED, OPTIONAL)
    if header:
        raise JiliangError("verifications: the header row is wrong", code="validation_failed", details=header)
    devices = sorted({v.get("device_id", "") for _, v in table.rows})
    instruments: dict[str, dict[str, Any]] = {}
    for i in range(0, len(devices), 5000):
        for rec in Instrument.objects.filter(device_id__in=devices[i : i + 5000]).values(
                "id", "device_id", "instrument_type_id", "accuracy_class", "params", "model__params", "region_id",
                "maker_id", "valid_until", "last_verified_on"):
            instruments[rec["device_id"]] = dict(rec)
    types = {t.key: t for t in InstrumentType.objects.all()}
    orgs = dict(Organization.objects.values_list("uscc", "id"))
    institutes = set(OrganizationKind.objects.filter(kind=OrgKind.VERIFICATION_INSTITUTE)
                     .values_list("organization_id", flat=True))
    makers = set(OrganizationKind.objects.filter(kind=OrgKind.MANUFACTURER).values_list("organization_id", flat=True))
    existing_certs = set(Verification.objects.exclude(certificate_no="")
                         .values_list("institution_id", "certificate_no"))
    first_pass: dict[int, dt.date] = {}
    for inst_id, d in (Verification.objects.filter(conforming=True, instrument__device_id__in=devices)
                       .values_list("instrument_id", "date").order_by("date")):
        first_pass.setdefault(inst_id, d)
    tables = load_tables()
    seen_certs: dict[tuple[int, str], int] = {}
    today = timezone.localdate()
    checks: list[tuple[_RowCheck, Any]] = []
    for chk in row_checks(table, checks):
        row = chk.row
        device = chk.required("device_id", 64)
        inst = instruments.get(device)
        if device and inst is None:
            chk.fail("device_id", "no instrument with this device_id is registered")
        kind = chk.required("kind", 15)
        if kind and kind not in _KINDS:
            chk.fail("kind", f"unknown kind (allowed: {', '.join(VerificationKind.values)})")
        date_s = chk.required("date", 10)
        date = None
        if date_s:
            try:
                date = dt.date.fromisoformat(date_s)
                if date > today:
                    chk.fail("date", "date lies in the future")
            except ValueError:
                chk.fail("date", "not a date (use YYYY-MM-DD)")
        inst_uscc = chk.uscc("institution_uscc")
        institution = orgs.get(inst_uscc)
        if inst_uscc and institution is None and not any(p.field == "institution_uscc" for p in chk.problems):
            chk.fail("institution_uscc", "no organization with this credit code is registered")
        elif institution is not None and institution not in institutes and not (
                kind == VerificationKind.FACTORY and institution in makers):
            chk.fail("institution_uscc", "not a verification institute (nor, for factory verification, a manufacturer)")
        stage = chk.get("stage") or Stage.INITIAL
        if stage not in _STAGES:
            chk.fail("stage", "use initial or in_service")
        cert = chk.optional("certificate_no", 64)
        if cert and institution is not None:
            if (institution, cert) in existing_certs:
                chk.fail("certificate_no", "this institution has already issued this certificate number")
            elif (institution, cert) in seen_certs:
                chk.fail("certificate_no", f"duplicate of row {seen_certs[(institution, cert)]} in this file")
            else:
                seen_certs[(institution, cert)] = row
        verifier = chk.optional("verifier", 50)
        standards = chk.optional("standards", 300)
        temperature = _float(chk, "temperature_c", -40, 80)
        humidity = _float(chk, "humidity_pct", 0, 100)
        points: Any = None
        try:
            points = orjson.loads(chk.get("points") or "null")
        except orjson.JSONDecodeError:
            chk.fail("points", "not valid JSON (expected a list of test points as in SPEC 3.3)")
        if points is not None and not isinstance(points, list):
            chk.fail("points", "must be a JSON list of test points")
        request = None
        if inst is not None and isinstance(points, list) and not chk.problems:
            params = {**(inst["model__params"] or {}), **(inst["params"] or {})}
            request = {"instrument_type": inst["instrument_type_id"], "accuracy_class": inst["accuracy_class"] or None,
                       "stage": stage, "params": params, "points": points}
        if inst is not None and institution is not None and kind in _KINDS:
            reason = policy.may_record(scope, kind=kind, institution_id=institution, region_code=inst["region_id"],
                                       maker_id=inst["maker_id"])
            if reason:
                chk.fail("device_id", reason)
        clean = None
        if not chk.problems and inst is not None and request is not None and date is not None:
            clean = {"inst": inst, "kind": kind, "stage": stage, "date": date, "institution": institution,
                     "verifier": verifier, "cert": cert, "points": points, "request": request,
                     "standards": standards, "temperature": temperature, "humidity": humidity}
        checks.append((chk, clean))
    # every row's test points judged in one vectorised pass (rows sharing type, class and parameters together)
    judged = [c for c in checks if c[1] is not None]
    for (chk, clean), result in zip(judged, evaluate_many([c["request"] for _, c in judged], tables), strict=True):
        if isinstance(result, RuleError):
            chk.fail("points", str(result))
        else:
            clean["result"] = result
    res, good = _finish("verifications", table, checks, skip_invalid)
    # validity needs the first passing verification, so walk each instrument's rows in date order
    good.sort(key=lambda g: (g["inst"]["id"], g["date"]))
    latest: dict[int, dict[str, Any]] = {}
    for g in good:
        inst_id = g["inst"]["id"]
        t = types[g["inst"]["instrument_type_id"]]
        ok = bool(g["result"]["conforming"])
        if ok and (inst_id not in first_pass or g["date"] < first_pass[inst_id]):
            first_pass[inst_id] = g["date"]
        g["valid_until"] = valid_until(mode=t.verification_mode, period_months=t.period_months,
                                       service_life_years=t.service_life_years, verified_on=g["date"], conforming=ok,
                                       first_verified_on=first_pass.get(inst_id))
        prev = g["inst"]["last_verified_on"]
        if prev is None or g["date"] >= prev:
            latest[inst_id] = g
    cols = ("id", "instrument_id", "kind", "stage", "date", "institution_id", "verifier", "certificate_no", "points",
            "results", "conforming", "valid_until", "created_at", "standards", "temperature_c", "humidity_pct",
            "engine_conforming", "override_reason")
    with transaction.atomic():
        ids = bulk.allocate_ids(Verification, len(good))
        now = timezone.now()
        rows = [[i, g["inst"]["id"], g["kind"], g["stage"], g["date"], g["institution"], g["verifier"], g["cert"],
                 g["points"], g["result"]["points"], g["result"]["conforming"], g["valid_until"], now, g["standards"],
                 g["temperature"], g["humidity"], None, ""]
                for i, g in zip(ids, good, strict=True)]
        bulk.insert_rows(Verification, cols, rows)
        bulk.bump_sequence(Verification)
        _update_instruments(latest)
        _write_changelog(("verification", "verification"), [
            (r[0], f"{g['inst']['device_id']} {g['date']}", {
                "id": r[0], "instrument_id": r[1], "kind": r[2], "stage": r[3], "date": r[4].isoformat(),
                "institution_id": r[5], "verifier": r[6], "certificate_no": r[7], "points": r[8],
                "conforming": r[10], "valid_until": r[11].isoformat() if r[11] else None, "standards": r[13],
                "temperature_c": r[14], "humidity_pct": r[15]})
            for r, g in zip(rows, good, strict=True)], actor)
    res.created = len(good)
    return res


def _update_instruments(latest: dict[int, dict[str, Any]]) -> None:
    """Keep each instrument's latest verification on its own row (due-date lists are then one query)."""
    if not latest:
        return
    by_value: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for inst_id, g in latest.items():
        by_value[(g["date"], bool(g["result"]["conforming"]), g["valid_until"])].append(inst_id)
    table = Instrument._meta.db_table
    with connection.cursor() as cur:
        for (date, ok, valid), inst_ids in by_value.items():
            for i in range(0, len(inst_ids), 900):
                chunk = inst_ids[i : i + 900]
                marks = ", ".join(["%s"] * len(chunk))
                cur.execute(
                    f'UPDATE "{table}" SET last_verified_on = %s, last_verification_conforming = %s, '  # noqa: S608
                    f"valid_until = %s WHERE id IN ({marks})", [date, ok, valid, *chunk])
