"""Upload of per-unit factory verification data (出厂检定数据上传): JSON array, NDJSON, CSV or XLSX.

Built for a million units per call (ADR 0009).  Records are turned into columns once and every check runs
over a whole column: dates are parsed once per distinct value, the test points of all units become one
NumPy array of errors, and the MPE limits come from the rule engine (:func:`jiliang.engine.rules.
evaluate_many`) for each distinct (model, point) — a few requests instead of three million — and are then
broadcast so that :func:`jiliang.engine.rules.judge` decides every point in one vectorised call.  Accepted
units are inserted with :func:`jiliang.core.bulk.insert_rows` (COPY on PostgreSQL) in one transaction
together with the batch statistics and one change-logged upload receipt.

A record is refused with (row, field, reason) when a field is missing or malformed, when its maker is not
the uploader or holds no valid authorization on the verification date, when its type or size is outside
the authorized scope, when its conclusion contradicts the rule engine (a failed unit marked as passed), or
when a stored unit with the same serial has different data.  All or nothing unless ``skip_invalid``.
Re-uploading a unit already stored with the same data is not an error and stores nothing (idempotent).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from django.db import connection, transaction
from django.utils import timezone

from jiliang.accounts.roles import Scope
from jiliang.core import bulk
from jiliang.core.changelog import actor_fields, log_change
from jiliang.core.errors import JiliangError, Problem
from jiliang.engine import factory as rules_factory
from jiliang.engine.rules import RuleError, evaluate_many, judge, load_tables
from jiliang.engine.validity import valid_until as type_validity
from jiliang.factory.models import Authorization, BatchPointStat, FactoryUnit, FactoryUpload
from jiliang.registry.choices import OrgKind
from jiliang.registry.models import InstrumentModel, InstrumentType, Organization, OrganizationKind
from jiliang.registry.tabular import Table

REQUIRED = ("name", "model", "size", "serial", "accuracy_class", "maker", "production_date", "verification_date",
            "conclusion", "institution", "points")
OPTIONAL = ("valid_until", "batch")
PASS_WORDS = {"合格": True, "pass": True, "passed": True, "conforming": True, "true": True, "1": True,
              "不合格": False, "fail": False, "failed": False, "nonconforming": False, "false": False, "0": False}
MAX_DETAILS = 1000  # problems listed in one refusal; the message gives the total


@dataclass
class UploadResult:
    created: int = 0
    unchanged: int = 0
    rejected: int = 0
    upload_id: int | None = None
    problems: list[Problem] = field(default_factory=list)


class _Problems:
    """Problems by record index; a record with any problem is refused."""

    def __init__(self, rows: Sequence[int]) -> None:
        self.rows = rows
        self.by_index: dict[int, list[Problem]] = {}

    def add(self, i: int, fieldname: str | None, reason: str, value: Any = None) -> None:
        v = None if value is None or value == "" else str(value)[:80]
        self.by_index.setdefault(i, []).append(Problem(row=self.rows[i], field=fieldname, reason=reason, value=v))

    def bad(self, i: int) -> bool:
        return i in self.by_index

    def all(self) -> list[Problem]:
        return [p for i in sorted(self.by_index) for p in self.by_index[i]]


def parse_ndjson(data: bytes) -> tuple[list[Any], list[int]]:
    """One JSON object per line; blank lines are skipped; ``rows`` are the line numbers."""
    records: list[Any] = []
    rows: list[int] = []
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise JiliangError(f"line {lineno} is not valid JSON: {exc}", code="bad_json",
                               details=[Problem(row=lineno, field=None, reason=f"not valid JSON: {exc}")]) from exc
        rows.append(lineno)
    return records, rows


def parse_json_array(data: bytes) -> tuple[list[Any], list[int]]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JiliangError(f"the body is not valid JSON: {exc}", code="bad_json") from exc
    if not isinstance(doc, list):
        raise JiliangError("the body must be a JSON array of units (or NDJSON, one unit per line)", code="bad_json")
    return doc, list(range(1, len(doc) + 1))


def table_records(table: Table) -> tuple[list[Any], list[int]]:
    """Spreadsheet rows as records (every value a string; ``points`` is parsed with the other fields)."""
    missing = [Problem(row=1, field=c, reason="required column is missing") for c in REQUIRED
               if c not in table.columns]
    allowed = set(REQUIRED) | set(OPTIONAL)
    unknown = [Problem(row=1, field=c, reason=f"unknown column (allowed: {', '.join((*REQUIRED, *OPTIONAL))})")
               for c in table.columns if c and c not in allowed]
    if missing or unknown:
        raise JiliangError("factory units: the header row is wrong", code="validation_failed",
                           details=missing + unknown)
    records: list[Any] = [v for _, v in table.rows]
    return records, [r for r, _ in table.rows]


# ------------------------------------------------------------------------------------------------- helpers

def points_to_text(points: list[Any]) -> str:
    """The compact stored form of test points (ADR 0008): ``[["Q1",0.12],["Q2",-0.3]]`` when every point has
    only a label and an error, else the points as given (e.g. with a water temperature)."""
    if all(type(p) is dict and p.keys() == {"point", "error_pct"} and type(p["error_pct"]) in (int, float)
           for p in points):
        return orjson.dumps([[p["point"], float(p["error_pct"])] for p in points]).decode()
    return orjson.dumps(points).decode()


def points_from_text(text: str) -> list[dict[str, Any]]:
    """The test points of a stored unit as ``[{"point", "error_pct", ...}]`` whichever form they were kept in."""
    raw = orjson.loads(text) if text else []
    return [{"point": p[0], "error_pct": p[1]} if isinstance(p, list) else dict(p) for p in raw]


def _text(col: list[Any], name: str, max_len: int, probs: _Problems, *, required: bool = True) -> list[str]:
    out: list[str] = []
    for i, v in enumerate(col):
        if v is None:
            v = ""
        elif type(v) is not str:
            if isinstance(v, int | float) and not isinstance(v, bool):
                v = str(v)
            else:
                probs.add(i, name, "must be text", v)
                out.append("")
                continue
        v = v.strip()
        if not v:
            if required:
                probs.add(i, name, "required value is empty")
        elif len(v) > max_len:
            probs.add(i, name, f"longer than {max_len} characters", v)
        out.append(v)
    return out


def _dates(col: list[str], name: str, probs: _Problems, today: dt.date, *, required: bool = True
           ) -> list[dt.date | None]:
    cache: dict[str, dt.date | str | None] = {}
    for s in set(col):
        if not s:
            cache[s] = None
            continue
        try:
            d = dt.date.fromisoformat(s[:10]) if len(s) == 10 or (len(s) > 10 and s[10] in "T ") else None
        except ValueError:
            d = None
        if d is None:
            cache[s] = "not a date (use YYYY-MM-DD)"
        elif d > today and name != "valid_until":
            cache[s] = "lies in the future"
        else:
            cache[s] = d
    out: list[dt.date | None] = []
    for i, s in enumerate(col):
        v = cache[s]
        if isinstance(v, str):
            probs.add(i, name, v, s)
            out.append(None)
        else:
            if v is None and required and s == "":
                probs.add(i, name, "required value is empty")
            out.append(v)
    return out


# ---------------------------------------------------------------------------------------------- the upload

def upload_units(*, actor: Any, records: list[Any], rows: Sequence[int] | None = None, source: str = "api",
                 skip_invalid: bool = False, today: dt.date | None = None) -> UploadResult:
    """Validate, judge and store factory verification records; see the module docstring."""
    scope = Scope.of(actor)
    today = today or timezone.localdate()
    rows = list(rows) if rows is not None else list(range(1, len(records) + 1))
    if not records:
        raise JiliangError("no units in the upload", code="validation_failed")
    probs = _Problems(rows)
    n = len(records)
    good_obj = [type(r) is dict for r in records]
    recs: list[dict[str, Any]] = [r if ok else {} for r, ok in zip(records, good_obj, strict=True)]
    for i, ok in enumerate(good_obj):
        if not ok:
            probs.add(i, None, "the record is not an object")
    allowed = set(REQUIRED) | set(OPTIONAL)
    keysets = {frozenset(r) for r in recs if r}
    for ks in keysets:
        extra = ks - allowed
        if extra:
            for i, r in enumerate(recs):
                if r and frozenset(r) == ks:
                    probs.add(i, sorted(extra)[0], f"unknown field (allowed: {', '.join((*REQUIRED, *OPTIONAL))})")

    name = _text([r.get("name") for r in recs], "name", 50, probs)
    model_name = _text([r.get("model") for r in recs], "model", 100, probs)
    size_s = _text([r.get("size") for r in recs], "size", 10, probs)
    serial = _text([r.get("serial") for r in recs], "serial", 64, probs)
    klass = _text([r.get("accuracy_class") for r in recs], "accuracy_class", 10, probs)
    maker_s = _text([r.get("maker") for r in recs], "maker", 18, probs)
    institution = _text([r.get("institution") for r in recs], "institution", 200, probs)
    batch = _text([r.get("batch") for r in recs], "batch", 64, probs, required=False)
    conclusion_s = _text([r.get("conclusion") for r in recs], "conclusion", 20, probs)
    prod = _dates(_text([r.get("production_date") for r in recs], "production_date", 32, probs),
                  "production_date", probs, today)
    verif = _dates(_text([r.get("verification_date") for r in recs], "verification_date", 32, probs),
                   "verification_date", probs, today)
    valid = _dates(_text([r.get("valid_until") for r in recs], "valid_until", 32, probs, required=False),
                   "valid_until", probs, today, required=False)

    dn_cache = {s: rules_factory.parse_dn(s) for s in set(size_s)}
    size_dn = [dn_cache[s] for s in size_s]
    claimed: list[bool | None] = []
    for i, s in enumerate(conclusion_s):
        c = PASS_WORDS.get(s.lower())
        if c is None and s:
            probs.add(i, "conclusion", "use 合格/pass or 不合格/fail", s)
        claimed.append(c)
    for i, s in enumerate(size_s):
        if s and size_dn[i] is None:
            probs.add(i, "size", "not a nominal size (use e.g. DN15)", s)
    for i in range(n):
        p, v = prod[i], verif[i]
        if p is not None and v is not None and p > v:
            probs.add(i, "production_date", "after the verification date", p.isoformat())

    # --- makers, authorizations, models (dictionaries loaded once)
    orgs = dict(Organization.objects.filter(uscc__in=set(maker_s)).values_list("uscc", "id"))
    makers = set(OrganizationKind.objects.filter(kind=OrgKind.MANUFACTURER, organization_id__in=orgs.values())
                 .values_list("organization_id", flat=True))
    auths: dict[int, Authorization] = {}
    for a in Authorization.objects.filter(manufacturer_id__in=makers).exclude(status__in=("rejected",)).order_by("id"):
        if a.status in ("granted", "suspended", "revoked") or a.manufacturer_id not in auths:
            auths[a.manufacturer_id] = a  # the latest decided authorization wins
    types = {t.key: t for t in InstrumentType.objects.all()}
    models_by_key: dict[tuple[int, str], dict[str, Any]] = {}
    for mrow in InstrumentModel.objects.filter(maker_id__in=makers).values(
            "id", "maker_id", "name", "instrument_type_id", "accuracy_class", "params"):
        models_by_key.setdefault((mrow["maker_id"], mrow["name"]), dict(mrow))
    maker_msg: dict[str, tuple[str, str] | None] = {}
    for code in set(maker_s):
        if not code:
            continue
        org_id = orgs.get(code)
        if org_id is None:
            maker_msg[code] = ("maker", "no organization with this credit code is registered")
        elif org_id not in makers:
            maker_msg[code] = ("maker", "the organization is not a manufacturer")
        elif not scope.is_admin and scope.org_id != org_id:
            maker_msg[code] = ("maker", "a manufacturer uploads only units it made")
        elif org_id not in auths:
            maker_msg[code] = ("maker", "the manufacturer holds no factory verification authorization (二检合一)")
        else:
            a = auths[org_id]
            state = rules_factory.AuthState(a.status, a.valid_from, a.valid_until)
            why = rules_factory.may_verify(state, today)
            maker_msg[code] = None if why is None else ("maker", f"{why}: no factory verification may be uploaded")
    scopes: dict[int, list[rules_factory.ScopeItem]] = {
        mid: rules_factory.parse_scope(a.scope, types)[0] for mid, a in auths.items()}

    unit_model: list[dict[str, Any] | None] = [None] * n
    maker_id: list[int] = [0] * n
    for i in range(n):
        code = maker_s[i]
        msg = maker_msg.get(code)
        if msg is not None:
            probs.add(i, msg[0], msg[1], code)
            continue
        if not code:
            continue
        mid = orgs[code]
        maker_id[i] = mid
        m = models_by_key.get((mid, model_name[i]))
        if m is None:
            if model_name[i]:
                probs.add(i, "model", "no such model of this manufacturer is registered", model_name[i])
            continue
        unit_model[i] = m
        if klass[i] and (m["accuracy_class"] or "") != klass[i]:
            probs.add(i, "accuracy_class", f"model {m['name']} is class {m['accuracy_class'] or '(none)'}", klass[i])
        dn = size_dn[i]
        if dn is not None and not any(s.covers(m["instrument_type_id"], dn) for s in scopes[mid]):
            covered = "; ".join(s.label() for s in scopes[mid]) or "nothing"
            probs.add(i, "size", f"outside the authorized scope ({covered})", size_s[i])
        a = auths[mid]
        v = verif[i]
        if v is not None and a.valid_from is not None and a.valid_until is not None and not (
                a.valid_from <= v <= a.valid_until):
            probs.add(i, "verification_date", f"outside the authorization's validity "
                      f"({a.valid_from.isoformat()} to {a.valid_until.isoformat()})", v.isoformat())

    # --- test points: one column of errors for all units
    pcol = [r.get("points") for r in recs]
    counts = np.zeros(n, dtype=np.int64)
    flat_points: list[Any] = []
    for i, pts in enumerate(pcol):
        if type(pts) is str:
            try:
                pts = orjson.loads(pts)
            except orjson.JSONDecodeError:
                probs.add(i, "points", "not valid JSON (expected a list of test points)", pts)
                pcol[i] = None
                continue
            pcol[i] = pts
        if type(pts) is not list or not pts or not all(type(p) is dict for p in pts):
            if pts is None or pts == "":
                probs.add(i, "points", "required value is empty")
            else:
                probs.add(i, "points", "must be a non-empty list of test points {point, error_pct}")
            pcol[i] = None
            continue
        counts[i] = len(pts)
        flat_points.extend(pts)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    raw_err = [p.get("error_pct") for p in flat_points]
    try:
        errors = np.array(raw_err, dtype=np.float64)
        bad_err = ~np.isfinite(errors)
        if any(type(x) is bool or type(x) is str for x in raw_err):
            raise TypeError
    except (TypeError, ValueError):
        errors = np.zeros(len(raw_err))
        bad_err = np.zeros(len(raw_err), dtype=bool)
        for j, x in enumerate(raw_err):
            if isinstance(x, int | float) and not isinstance(x, bool):
                errors[j] = float(x)
                bad_err[j] = not np.isfinite(errors[j])
            else:
                bad_err[j] = True
    row_of_point = np.repeat(np.arange(n), counts)
    if bad_err.any():
        for j in np.flatnonzero(bad_err).tolist():
            i = int(row_of_point[j])
            probs.add(i, f"points[{j - int(offsets[i])}].error_pct", "must be a finite number", raw_err[j])
    labels = [p.get("point") for p in flat_points]
    temps = [p.get("water_temp_c") for p in flat_points]
    has_temp = any(t is not None for t in temps)
    # distinct (model, point label[, temperature]) → one engine request each
    key_ids: dict[tuple[Any, ...], int] = {}
    point_key = np.zeros(len(flat_points), dtype=np.int64)
    model_of_row = [m["id"] if m is not None else -1 for m in unit_model]
    for j, (lab, t) in enumerate(zip(labels, temps if has_temp else [None] * len(labels), strict=True)):
        k = (model_of_row[int(row_of_point[j])], lab if type(lab) is str else repr(lab), t)
        kid = key_ids.get(k)
        if kid is None:
            kid = key_ids[k] = len(key_ids)
        point_key[j] = kid
    models_by_id = {m["id"]: m for m in models_by_key.values()}
    tables = load_tables()
    requests: list[Mapping[str, Any]] = []
    for (mid, lab, t) in key_ids:
        m = models_by_id.get(mid)
        if m is None:
            requests.append({"instrument_type": None})
            continue
        pt: dict[str, Any] = {"point": lab, "error_pct": 0.0}
        if t is not None:
            pt["water_temp_c"] = t
        requests.append({"instrument_type": m["instrument_type_id"], "accuracy_class": m["accuracy_class"] or None,
                         "params": m["params"] or {}, "points": [pt]})
    lo_k = np.full(len(requests), np.nan)
    hi_k = np.full(len(requests), np.nan)
    key_error: dict[int, str] = {}
    for kid, res in enumerate(evaluate_many(requests, tables)):
        if requests[kid].get("instrument_type") is None:
            continue
        if isinstance(res, RuleError):
            key_error[kid] = str(res).replace("points[0]", "point")
            continue
        row = res["points"][0]
        hi_k[kid] = row.get("mpe_upper", row["mpe"])
        lo_k[kid] = row.get("mpe_lower", -row["mpe"])
    if key_error:
        for j in np.flatnonzero(np.isin(point_key, list(key_error))).tolist():
            i = int(row_of_point[j])
            probs.add(i, f"points[{j - int(offsets[i])}].point", key_error[int(point_key[j])], labels[j])
    lower, upper = lo_k[point_key], hi_k[point_key]
    ok_pt, _margin = judge(np.nan_to_num(errors), np.nan_to_num(lower, nan=-np.inf),
                           np.nan_to_num(upper, nan=np.inf))
    fails_per_row = np.bincount(row_of_point, weights=(~ok_pt).astype(np.float64), minlength=n)
    conforming = fails_per_row == 0

    # --- conclusion and validity against the engine
    validity_cache: dict[tuple[str, dt.date], dt.date | None] = {}
    for i in range(n):
        m = unit_model[i]
        if m is None or counts[i] == 0:
            continue
        ok = bool(conforming[i])
        c = claimed[i]
        if c is True and not ok:
            j = int(offsets[i]) + int(np.flatnonzero(~ok_pt[offsets[i]:offsets[i + 1]])[0])
            probs.add(i, "conclusion", f"marked as passed, but the rule engine judges it failed at "
                      f"{labels[j]} (error {errors[j]:g} %, limits {lower[j]:g} to {upper[j]:g} %)", conclusion_s[i])
        elif c is False and ok:
            probs.add(i, "conclusion", "marked as failed, but every test point is within the MPE", conclusion_s[i])
        v = verif[i]
        vu = valid[i]
        if not ok:
            if vu is not None:
                probs.add(i, "valid_until", "a failed unit has no validity", vu.isoformat())
            continue
        if v is None:
            continue
        key = (m["instrument_type_id"], v)
        if key not in validity_cache:
            t = types[m["instrument_type_id"]]
            validity_cache[key] = type_validity(mode=t.verification_mode, period_months=t.period_months,
                                                service_life_years=t.service_life_years, verified_on=v,
                                                conforming=True)
        limit = validity_cache[key]
        if vu is None:
            if limit is not None:
                valid[i] = limit
        elif vu <= v:
            probs.add(i, "valid_until", "must lie after the verification date", vu.isoformat())
        elif limit is not None and vu > limit:
            probs.add(i, "valid_until", f"beyond what the verification covers ({limit.isoformat()})",
                      vu.isoformat())

    # --- duplicates in the file, then against stored units (idempotency)
    seen: dict[tuple[int, str], int] = {}
    for i in range(n):
        if not serial[i] or not maker_id[i]:
            continue
        sk = (maker_id[i], serial[i])
        if sk in seen:
            probs.add(i, "serial", f"duplicate of row {rows[seen[sk]]} in this upload", serial[i])
        else:
            seen[sk] = i
    for i in range(n):
        pd_i = prod[i]
        if not batch[i] and pd_i is not None and model_name[i]:
            batch[i] = f"{model_name[i]}-{pd_i.strftime('%Y%m%d')}"  # default: one model's production day
    points_text = [points_to_text(p) if p is not None else "" for p in pcol]
    stored = _stored(seen)
    unchanged: set[int] = set()
    for (mid, ser), i in seen.items():
        old = stored.get((mid, ser))
        if old is None:
            continue
        m = unit_model[i]
        new = (m["id"] if m else None, size_dn[i], klass[i], batch[i], prod[i], verif[i], valid[i],
               bool(conforming[i]), institution[i], name[i], pcol[i])
        old = (*old[:-1], points_from_text(old[-1]))  # points compared as data, not as text
        if tuple(old) == new:
            unchanged.add(i)
        else:
            diff = [f for f, a, b in zip(_CMP_FIELDS, old, new, strict=True) if a != b]
            probs.add(i, diff[0] if diff else "serial", "this serial is already stored with different data "
                      f"({', '.join(diff)}); factory verification records are not overwritten", ser)

    # --- decide
    problems = probs.all()
    rejected = len(probs.by_index)
    if rejected and not skip_invalid:
        shown = problems[:MAX_DETAILS]
        more = f" (first {MAX_DETAILS} problems listed)" if len(problems) > MAX_DETAILS else ""
        raise JiliangError(f"factory units: {rejected} of {n} records are invalid; nothing was stored{more}",
                           code="validation_failed", details=shown)
    keep = [i for i in range(n) if not probs.bad(i) and i not in unchanged]
    result = UploadResult(created=len(keep), unchanged=len(unchanged), rejected=rejected, problems=problems)
    if not keep:
        return result
    keep_arr = np.array(keep, dtype=np.int64)
    with transaction.atomic():
        up = FactoryUpload(manufacturer_id=maker_id[keep[0]], source=source[:20], created=len(keep),
                           unchanged=len(unchanged), sha256="", actor_label=actor_fields(actor)[1])
        digest = hashlib.sha256()
        cols = ("upload_id", "manufacturer_id", "authorization_id", "model_id", "instrument_type", "name", "size_dn",
                "serial", "accuracy_class", "batch", "production_date", "verification_date", "valid_until",
                "conforming", "institution", "points", "status", "install_address")
        up.save()
        uid = up.pk
        conf_list = conforming.tolist()

        def gen() -> Any:
            for i in keep:
                m = unit_model[i]
                assert m is not None
                mid = maker_id[i]
                digest.update(f"{mid}\t{serial[i]}\t{points_text[i]}\t{conf_list[i]}\n".encode())
                yield (uid, mid, auths[mid].pk, m["id"], m["instrument_type_id"], name[i], size_dn[i], serial[i],
                       klass[i], batch[i], prod[i], verif[i], valid[i], conf_list[i], institution[i],
                       points_text[i], "in_stock", "")

        bulk.insert_rows(FactoryUnit, cols, gen())
        up.sha256 = digest.hexdigest()
        up.save(update_fields=["sha256"])
        _merge_stats(keep_arr, row_of_point, offsets, errors, upper, labels, unit_model, maker_id, batch, verif)
        log_change(actor=actor, obj=up, action="create")
    result.upload_id = uid
    return result


_CMP_FIELDS = ("model", "size", "accuracy_class", "batch", "production_date", "verification_date", "valid_until",
               "conclusion", "institution", "name", "points")


def _stored(seen: dict[tuple[int, str], int]) -> dict[tuple[int, str], tuple[Any, ...]]:
    """Stored units among ``seen`` (maker, serial); one probe per maker first, so a fresh upload costs nothing."""
    out: dict[tuple[int, str], tuple[Any, ...]] = {}
    by_maker: dict[int, list[str]] = defaultdict(list)
    for mid, ser in seen:
        by_maker[mid].append(ser)
    fields = ["model_id", "size_dn", "accuracy_class", "batch", "production_date", "verification_date",
              "valid_until", "conforming", "institution", "name", "points"]
    for mid, sers in by_maker.items():
        lo, hi = min(sers), max(sers)
        if not FactoryUnit.objects.filter(manufacturer_id=mid, serial__gte=lo, serial__lte=hi).exists():
            continue
        if connection.vendor == "postgresql":
            qs_rows = FactoryUnit.objects.filter(manufacturer_id=mid).extra(
                where=["serial = ANY(%s)"], params=[sers]).values_list("serial", *fields)
            for r in qs_rows:
                out[(mid, r[0])] = tuple(r[1:])
            continue
        for k in range(0, len(sers), 900):
            for r in FactoryUnit.objects.filter(manufacturer_id=mid, serial__in=sers[k:k + 900]).values_list(
                    "serial", *fields):
                out[(mid, r[0])] = tuple(r[1:])
    return out


def _merge_stats(keep: np.ndarray[Any, Any], row_of_point: np.ndarray[Any, Any], offsets: np.ndarray[Any, Any],
                 errors: np.ndarray[Any, Any], upper: np.ndarray[Any, Any], labels: list[Any],
                 unit_model: list[dict[str, Any] | None], maker_id: list[int], batch: list[str],
                 verif: list[dt.date | None]) -> None:
    """Moments of the new units' errors per (maker, model, batch, point), merged into the stored rows."""
    kept = np.zeros(len(unit_model), dtype=bool)
    kept[keep] = True
    sel = kept[row_of_point]
    if not sel.any():
        return
    pts = np.flatnonzero(sel)
    group_ids: dict[tuple[int, int, str, str], int] = {}
    gid = np.empty(len(pts), dtype=np.int64)
    row_group: dict[int, tuple[int, int, str]] = {}
    for k, j in enumerate(pts.tolist()):
        i = int(row_of_point[j])
        rg = row_group.get(i)
        if rg is None:
            m = unit_model[i]
            assert m is not None
            rg = row_group[i] = (maker_id[i], m["id"], batch[i])
        key = (*rg, str(labels[j]))
        g = group_ids.get(key)
        if g is None:
            g = group_ids[key] = len(group_ids)
        gid[k] = g
    e = errors[pts]
    cnt = np.bincount(gid, minlength=len(group_ids))
    mean = np.bincount(gid, weights=e, minlength=len(group_ids)) / cnt
    m2 = np.bincount(gid, weights=(e - mean[gid]) ** 2, minlength=len(group_ids))
    mpe = np.zeros(len(group_ids))
    mpe[gid] = upper[pts]
    span: dict[tuple[int, int, str], list[dt.date]] = {}
    for i, rg in row_group.items():
        d = verif[i]
        if d is None:
            continue
        lst = span.setdefault(rg, [d, d])
        if d < lst[0]:
            lst[0] = d
        elif d > lst[1]:
            lst[1] = d
    existing = {(s.manufacturer_id, s.model_id, s.batch, s.point): s for s in BatchPointStat.objects.select_for_update()
                .filter(manufacturer_id__in={k[0] for k in group_ids}, batch__in={k[2] for k in group_ids})}
    create = []
    for key, g in group_ids.items():
        mo = rules_factory.Moments(int(cnt[g]), float(mean[g]), float(m2[g]))
        d0, d1 = span.get(key[:3], [timezone.localdate(), timezone.localdate()])
        old = existing.get(key)
        if old is None:
            create.append(BatchPointStat(manufacturer_id=key[0], model_id=key[1], batch=key[2], point=key[3],
                                         n=mo.n, mean=mo.mean, m2=mo.m2, mpe=float(mpe[g]), first_date=d0,
                                         last_date=d1))
            continue
        merged = rules_factory.Moments(old.n, old.mean, old.m2).merge(mo)
        old.n, old.mean, old.m2 = merged.n, merged.mean, merged.m2
        old.first_date, old.last_date = min(old.first_date, d0), max(old.last_date, d1)
        old.save(update_fields=["n", "mean", "m2", "first_date", "last_date"])
    BatchPointStat.objects.bulk_create(create, batch_size=2000)


# --------------------------------------------------------------------------------------- the columnar path

_STR_FIELDS = {"name": 50, "model": 100, "size": 10, "serial": 64, "accuracy_class": 10, "maker": 18,
               "production_date": 32, "verification_date": 32, "conclusion": 20, "institution": 200,
               "valid_until": 32, "batch": 64}


def upload_ndjson(*, actor: Any, body: bytes, source: str = "api:ndjson", skip_invalid: bool = False,
                  today: dt.date | None = None) -> UploadResult:
    """NDJSON upload: the columnar fast path (:func:`_fast_upload`, Polars) for a clean body; anything it
    cannot vouch for — a problem in any record, a unit already stored, an unexpected shape — goes through
    :func:`upload_units`, which names every problem.  Both paths store the same rows."""
    res = _fast_upload(actor=actor, body=body, source=source, today=today or timezone.localdate())
    if res is not None:
        return res
    records, rows = parse_ndjson(body)
    return upload_units(actor=actor, records=records, rows=rows, source=source, skip_invalid=skip_invalid,
                        today=today)


def _fast_upload(*, actor: Any, body: bytes, source: str, today: dt.date) -> UploadResult | None:
    """None when the slow path must decide; otherwise the units are stored.  Accepts only what
    :func:`upload_units` would accept, checked column by column."""
    import io

    import polars as pl

    scope = Scope.of(actor)
    try:
        df = pl.read_ndjson(io.BytesIO(body))
    except Exception:
        return None
    n = df.height
    cols = set(df.columns)
    if n == 0 or not set(REQUIRED) <= cols or not cols <= set(REQUIRED) | set(OPTIONAL):
        return None
    for c, max_len in _STR_FIELDS.items():
        if c not in cols:
            continue
        if df.schema[c] != pl.String:
            return None
        s = df[c]
        optional = c in OPTIONAL
        if not optional and (s.null_count() or (s.str.len_chars() == 0).any()):
            return None
        if optional and s.null_count() != n:
            return None  # valid_until or batch given: the exact path checks them
        if not optional and ((s.str.len_chars() > max_len).any() or (s.str.strip_chars() != s).any()):
            return None
    ptype = df.schema["points"]
    if not isinstance(ptype, pl.List) or not isinstance(ptype.inner, pl.Struct):
        return None
    if {f.name for f in ptype.inner.fields} != {"point", "error_pct"}:
        return None
    if df["points"].null_count() or (df["points"].list.len() == 0).any():
        return None
    ex = df.select(pl.int_range(n).alias("row"), pl.col("points")).explode("points").unnest("points")
    if ex.schema["error_pct"] not in (pl.Float64, pl.Int64) or ex.schema["point"] != pl.String:
        return None
    errors = ex["error_pct"].cast(pl.Float64).to_numpy()
    if not ex["point"].str.contains(r"^[A-Za-z0-9_.]{1,30}$").all():
        return None  # labels written into the compact points text unescaped: only plain ones here
    if ex["point"].null_count() or ex["error_pct"].null_count() or not np.isfinite(errors).all():
        return None
    # makers, authorizations, models: per distinct value
    makers_u = df["maker"].unique().to_list()
    orgs = dict(Organization.objects.filter(uscc__in=makers_u).values_list("uscc", "id"))
    if len(orgs) != len(makers_u):
        return None
    auths: dict[int, Authorization] = {}
    for code in makers_u:
        oid = orgs[code]
        if not OrganizationKind.objects.filter(organization_id=oid, kind=OrgKind.MANUFACTURER).exists():
            return None
        if not scope.is_admin and scope.org_id != oid:
            return None
        decided = Authorization.objects.filter(manufacturer_id=oid, status__in=("granted", "suspended", "revoked"))
        a = (decided.order_by("id").last()
             or Authorization.objects.filter(manufacturer_id=oid).exclude(status="rejected").order_by("id").last())
        if a is None or rules_factory.may_verify(rules_factory.AuthState(a.status, a.valid_from, a.valid_until),
                                                 today) is not None:
            return None
        auths[oid] = a
    types = {t.key: t for t in InstrumentType.objects.all()}
    pairs = df.select("maker", "model", "accuracy_class", "size").unique().rows()
    model_of: dict[tuple[str, str], dict[str, Any]] = {}
    for code, mname, klass, size in pairs:
        m = (InstrumentModel.objects.filter(maker_id=orgs[code], name=mname)
             .values("id", "instrument_type_id", "accuracy_class", "params").order_by("id").first())
        dn = rules_factory.parse_dn(size)
        if m is None or (m["accuracy_class"] or "") != klass or dn is None:
            return None
        items = rules_factory.parse_scope(auths[orgs[code]].scope, types)[0]
        if not any(s.covers(m["instrument_type_id"], dn) for s in items):
            return None
        model_of[(code, mname)] = dict(m)
    # dates and conclusions: per distinct value
    date_map: dict[str, dt.date] = {}
    for c in ("production_date", "verification_date"):
        for s in df[c].unique().to_list():
            try:
                d = dt.date.fromisoformat(s) if len(s) == 10 else None
            except ValueError:
                d = None
            if d is None or d > today:
                return None
            date_map[s] = d
    if not set(df["conclusion"].unique().to_list()) <= set(PASS_WORDS):
        return None
    prod = df["production_date"].replace_strict(date_map, return_dtype=pl.Date)
    verif = df["verification_date"].replace_strict(date_map, return_dtype=pl.Date)
    if (prod > verif).any():
        return None
    for code in makers_u:
        a = auths[orgs[code]]
        vs = verif.filter(df["maker"] == code)
        if a.valid_from is None or a.valid_until is None or vs.min() < a.valid_from or vs.max() > a.valid_until:  # type: ignore[operator]
            return None
    if df.select(pl.struct("maker", "serial").is_duplicated().any()).item():
        return None
    # judge: the engine's limits per distinct (model, point), broadcast to every point
    mid_map = {f"{k[0]}\x1f{k[1]}": v["id"] for k, v in model_of.items()}
    df = df.with_columns(pl.concat_str("maker", "model", separator="\x1f").replace_strict(
        mid_map, return_dtype=pl.Int64).alias("model_id"))
    model_ids = df["model_id"].to_numpy()
    point_model = model_ids[ex["row"].to_numpy()]
    keys = pl.DataFrame({"m": point_model, "p": ex["point"]})
    distinct = keys.unique(maintain_order=True)
    models_by_id = {m["id"]: m for m in model_of.values()}
    requests: list[Mapping[str, Any]] = [
        {"instrument_type": models_by_id[m]["instrument_type_id"],
         "accuracy_class": models_by_id[m]["accuracy_class"] or None, "params": models_by_id[m]["params"] or {},
         "points": [{"point": p, "error_pct": 0.0}]} for m, p in distinct.rows()]
    lo_k, hi_k = [], []
    for res in evaluate_many(requests, load_tables()):
        if isinstance(res, RuleError):
            return None
        row = res["points"][0]
        hi_k.append(row.get("mpe_upper", row["mpe"]))
        lo_k.append(row.get("mpe_lower", -row["mpe"]))
    kid = keys.join(distinct.with_row_index("k"), on=["m", "p"], how="left", maintain_order="left")["k"].to_numpy()
    lower, upper = np.array(lo_k)[kid], np.array(hi_k)[kid]
    ok_pt, _ = judge(errors, lower, upper)
    rows_arr = ex["row"].to_numpy()
    conforming = np.bincount(rows_arr, weights=(~ok_pt).astype(np.float64), minlength=n) == 0
    claimed = df["conclusion"].replace_strict(PASS_WORDS, return_dtype=pl.Boolean).to_numpy()
    if (claimed != conforming).any():
        return None
    # validity: the type's limit for each distinct (type, verification date), failed units none
    tid = {m["id"]: m["instrument_type_id"] for m in model_of.values()}
    vd = pl.DataFrame({"model_id": model_ids, "v": verif}).unique()
    limits = []
    for m, v in vd.rows():
        t = types[tid[m]]
        limits.append(type_validity(mode=t.verification_mode, period_months=t.period_months,
                                    service_life_years=t.service_life_years, verified_on=v, conforming=True))
    vd = vd.with_columns(pl.Series("valid_until", limits, dtype=pl.Date))
    valid = (pl.DataFrame({"model_id": model_ids, "v": verif})
             .join(vd, on=["model_id", "v"], how="left", maintain_order="left")["valid_until"])
    valid = pl.select(pl.when(pl.Series(conforming)).then(valid).otherwise(None)).to_series().alias("valid_until")
    # idempotency: any stored serial → the exact path (it tells unchanged from different data)
    for code in makers_u:
        sers = df.filter(pl.col("maker") == code)["serial"]
        if FactoryUnit.objects.filter(manufacturer_id=orgs[code], serial__gte=sers.min(),
                                      serial__lte=sers.max()).exists():
            return None
    batch = pl.concat_str(pl.col("model"), pl.lit("-"), pl.col("production_date").str.replace_all("-", ""))
    out = df.select(
        pl.col("maker").replace_strict(orgs, return_dtype=pl.Int64).alias("manufacturer_id"),
        pl.col("maker").replace_strict({c: auths[o].pk for c, o in orgs.items()}, return_dtype=pl.Int64)
        .alias("authorization_id"),
        pl.col("model_id"),
        pl.col("model_id").replace_strict(tid, return_dtype=pl.String).alias("instrument_type"),
        pl.col("name"),
        pl.col("size").str.to_uppercase().str.replace("DN", "").str.strip_chars().cast(pl.Int64).alias("size_dn"),
        pl.col("serial"), pl.col("accuracy_class"), batch.alias("batch"),
        prod.alias("production_date"), verif.alias("verification_date"),
        valid,
        pl.Series("conforming", conforming),
        pl.col("institution"),
        pl.concat_str(pl.lit("["), pl.col("points").list.eval(pl.format(
            '["{}",{}]', pl.element().struct.field("point"),
            pl.element().struct.field("error_pct").cast(pl.Float64))).list.join(","), pl.lit("]")).alias("points"),
    )
    with transaction.atomic():
        up = FactoryUpload(manufacturer_id=orgs[makers_u[0]], source=source[:20], created=n, unchanged=0,
                           sha256="", actor_label=actor_fields(actor)[1])
        up.save()
        out = out.with_columns(pl.lit(up.pk, dtype=pl.Int64).alias("upload_id"), pl.lit("in_stock").alias("status"),
                               pl.lit("").alias("install_address"))
        _insert_frame(out)
        up.sha256 = hashlib.sha256(out.select("manufacturer_id", "serial", "points", "conforming")
                                   .write_csv().encode()).hexdigest()
        up.save(update_fields=["sha256"])
        _merge_stats_frame(out, ex, upper, rows_arr)
        log_change(actor=actor, obj=up, action="create")
    return UploadResult(created=n, upload_id=up.pk)


def _insert_frame(df: Any) -> None:
    """Insert a Polars frame in one go: COPY … CSV on PostgreSQL, executemany on SQLite, the values formatted
    per column by Polars (the per-value formatting of :func:`jiliang.core.bulk.insert_rows` would cost more
    than the whole validation at a million rows)."""
    import polars as pl

    cols = df.columns
    if connection.vendor != "postgresql":
        # SQLite: the values as Django writes them (ISO dates, 0/1), converted per column, not per value
        df = df.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"), pl.col(pl.Boolean).cast(pl.Int8))
        names = ", ".join(f'"{c}"' for c in cols)
        marks = ", ".join(["%s"] * len(cols))
        with connection.cursor() as cur:
            for start in range(0, df.height, 50_000):
                cur.executemany(f'INSERT INTO "{FactoryUnit._meta.db_table}" ({names}) VALUES ({marks})',  # noqa: S608
                                df.slice(start, 50_000).rows())
        return
    table = FactoryUnit._meta.db_table
    names = ", ".join(f'"{c}"' for c in cols)
    with connection.cursor() as cur:
        from psycopg.copy import QueuedLibpqWriter

        raw = cur.cursor  # the psycopg 3 cursor underneath Django's wrapper
        # a queued writer sends in a thread, so Polars formats the next slice while the server ingests
        with raw.copy(f'COPY "{table}" ({names}) FROM STDIN WITH (FORMAT csv, NULL \'\\N\')',
                      writer=QueuedLibpqWriter(raw)) as copy:
            step = 200_000
            for start in range(0, df.height, step):
                copy.write(df.slice(start, step).write_csv(include_header=False, null_value="\\N"))


def _merge_stats_frame(out: Any, ex: Any, upper: np.ndarray[Any, Any], rows_arr: np.ndarray[Any, Any]) -> None:
    import polars as pl

    pts = pl.DataFrame({"m": out["manufacturer_id"].to_numpy()[rows_arr], "mo": out["model_id"].to_numpy()[rows_arr],
                        "b": out["batch"].gather(rows_arr), "p": ex["point"], "e": ex["error_pct"].cast(pl.Float64),
                        "mpe": upper, "d": out["verification_date"].gather(rows_arr)})
    g = pts.group_by("m", "mo", "b", "p").agg(
        pl.len().alias("n"), pl.col("e").mean().alias("mean"),
        ((pl.col("e") - pl.col("e").mean()) ** 2).sum().alias("m2"), pl.col("mpe").first(),
        pl.col("d").min().alias("d0"), pl.col("d").max().alias("d1"))
    existing = {(s.manufacturer_id, s.model_id, s.batch, s.point): s for s in BatchPointStat.objects.select_for_update()
                .filter(manufacturer_id__in=g["m"].unique().to_list(), batch__in=g["b"].unique().to_list())}
    create = []
    for m, mo, b, p, cnt, mean, m2, mpe, d0, d1 in g.iter_rows():
        new = rules_factory.Moments(int(cnt), float(mean), float(m2))
        old = existing.get((m, mo, b, p))
        if old is None:
            create.append(BatchPointStat(manufacturer_id=m, model_id=mo, batch=b, point=p, n=new.n, mean=new.mean,
                                         m2=new.m2, mpe=float(mpe), first_date=d0, last_date=d1))
            continue
        merged = rules_factory.Moments(old.n, old.mean, old.m2).merge(new)
        old.n, old.mean, old.m2 = merged.n, merged.mean, merged.m2
        old.first_date, old.last_date = min(old.first_date, d0), max(old.last_date, d1)
        old.save(update_fields=["n", "mean", "m2", "first_date", "last_date"])
    BatchPointStat.objects.bulk_create(create, batch_size=2000)
