"""Parsing and validating telemetry records (SPEC 3.2, NDJSON) into typed rows.  Pure: no Django.

Each line is one JSON object with a ``kind``.  A line is rejected with its number, the field and the
reason when it is not JSON, has an unknown kind, misses a field, has a wrong type, names a device that is
not registered (or not of the right instrument type, or not the sender's), or a place/tank that does not
fit.  Unknown extra fields are ignored (forward compatible).  Times must be RFC 3339 with an offset; they
come out as aware UTC datetimes.  Integers are whole numbers in the smallest unit named; ``register`` is
kept in thousandths of the meter's unit.

>>> devs = {"SC-1": Device(id=7, type="scale", owner_id=3, place_id=None)}
>>> r = parse([b'{"kind":"scale.txn","device":"SC-1","ts":"2026-11-01T08:00:00+08:00","seq":1,'
...            b'"net_g":500,"tare_g":0,"unit_price_fen_per_kg":1200,"amount_fen":600}', b'{"kind":"x"}'],
...           devices=devs, places={})
>>> r.rows["scale.txn"][0][:3], [(x.line, x.field) for x in r.rejected]
((7, datetime.datetime(2026, 11, 1, 0, 0, tzinfo=datetime.timezone.utc), 1), [(2, 'kind')])
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

UTC = dt.UTC
KINDS = ("scale.txn", "scale.event", "scale.recheck", "charger.session", "dispenser.sale", "tank.reading",
         "tank.delivery", "meter.reading")
DEVICE_TYPES: dict[str, frozenset[str]] = {
    "scale.txn": frozenset({"scale"}),
    "scale.event": frozenset({"scale"}),
    "scale.recheck": frozenset({"scale"}),
    "charger.session": frozenset({"ev_charger_ac", "ev_charger_dc"}),
    "dispenser.sale": frozenset({"fuel_dispenser"}),
    "meter.reading": frozenset({"water_meter", "gas_meter", "electricity_meter"}),
}
SCALE_EVENTS = frozenset({"power_on", "zero", "calibration", "param_change", "seal_open", "software"})
METER_FLAGS = {"reverse": 1, "tamper": 2, "low_battery": 4}
INT64_MAX = 2**63 - 1
# The columns of each kind's row, in the order the parser gives them (the telemetry tables' column names).
ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    "scale.txn": ("device_id", "ts", "seq", "net_g", "tare_g", "unit_price_fen_per_kg", "amount_fen"),
    "scale.event": ("device_id", "ts", "seq", "event", "sw_id", "sw_hash"),
    "scale.recheck": ("place_id", "device_id", "ts", "claimed_g", "actual_g"),
    "charger.session": ("device_id", "seq", "session_id", "start_ts", "end_ts", "meter_start_wh", "meter_end_wh",
                        "energy_wh", "vehicle", "bms_energy_wh", "amount_fen", "ocmf"),
    "dispenser.sale": ("device_id", "ts", "seq", "volume_ml", "amount_fen", "totalizer_ml"),
    "tank.reading": ("place_id", "tank", "ts", "volume_ml", "temp_c"),
    "tank.delivery": ("place_id", "tank", "ts", "volume_ml"),
    "meter.reading": ("device_id", "ts", "seq", "register_milli", "flags"),
}
TIME_COLUMNS = frozenset({"ts", "start_ts", "end_ts"})
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    type: str
    owner_id: int
    place_id: int | None


@dataclass(frozen=True, slots=True)
class Place:
    id: int
    kind: str
    operator_id: int
    tanks: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    field: str | None
    reason: str
    raw: str


@dataclass
class ParseResult:
    """Accepted rows per kind and the rejected lines.  The per-line parser fills ``rows`` (tuples in the
    order of ``ROW_COLUMNS``); the batch parser puts the high-volume kinds (``COLUMNAR``) into ``columns``
    instead: NumPy arrays per column in line order, times as ``int64`` microseconds since the Unix epoch
    (UTC), plus ``line`` (the line numbers)."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    rejected: list[Rejection] = field(default_factory=list)
    lines: int = 0
    columns: dict[str, dict[str, npt.NDArray[Any]]] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return sum(len(v) for v in self.rows.values()) + sum(c["line"].size for c in self.columns.values())

    def all_rows(self, kind: str) -> list[tuple[Any, ...]]:
        """The kind's rows as the per-line parser gives them (tuples with aware UTC datetimes), in line
        order -- for tests and for callers that want tuples."""
        cols = self.columns.get(kind)
        if cols is None:
            return list(self.rows[kind])
        out = [list(cols[c].tolist()) for c in ROW_COLUMNS[kind]]
        for j, c in enumerate(ROW_COLUMNS[kind]):
            if c in TIME_COLUMNS:
                out[j] = [EPOCH + dt.timedelta(microseconds=v) for v in out[j]]
        return [*zip(*out, strict=True), *self.rows[kind]] if out else list(self.rows[kind])


class _Bad(Exception):
    def __init__(self, fieldname: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = fieldname
        self.reason = reason


def _get(obj: Mapping[str, Any], key: str) -> Any:
    try:
        v = obj[key]
    except KeyError:
        raise _Bad(key, "missing field") from None
    if v is None:
        raise _Bad(key, "must not be null")
    return v


def _int(obj: Mapping[str, Any], key: str, *, minimum: int | None = 0) -> int:
    v = _get(obj, key)
    if type(v) is not int:
        raise _Bad(key, f"must be a whole number, not {type(v).__name__}")
    if minimum is not None and v < minimum:
        raise _Bad(key, f"must be at least {minimum}")
    if v > INT64_MAX or v < -INT64_MAX - 1:
        raise _Bad(key, "too large")
    return v


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    return None if obj.get(key) is None else _int(obj, key)


def _str(obj: Mapping[str, Any], key: str, max_len: int) -> str:
    v = _get(obj, key)
    if not isinstance(v, str) or not v:
        raise _Bad(key, "must be a non-empty string")
    if len(v) > max_len:
        raise _Bad(key, f"longer than {max_len} characters")
    return v


def _ts(obj: Mapping[str, Any], key: str) -> dt.datetime:
    v = _get(obj, key)
    if not isinstance(v, str):
        raise _Bad(key, "must be an RFC 3339 time string")
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise _Bad(key, "not an RFC 3339 time") from None
    if t.tzinfo is None:
        raise _Bad(key, "needs a UTC offset (RFC 3339), e.g. 2026-11-01T08:00:00+08:00")
    try:
        return t.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise _Bad(key, "not an RFC 3339 time") from None


class Parser:
    """Validates records against the registry snapshot it is given (devices and places by key)."""

    def __init__(self, *, devices: Mapping[str, Device], places: Mapping[str, Place],
                 sender_org: int | None = None) -> None:
        self.devices = devices
        self.places = places
        self.sender_org = sender_org

    def _device(self, obj: Mapping[str, Any], kind: str) -> Device:
        key = _get(obj, "device")
        if not isinstance(key, str):
            raise _Bad("device", "must be the instrument's device_id (a string)")
        d = self.devices.get(key)
        if d is None:
            raise _Bad("device", f"device {key!r} is not registered")
        if d.type not in DEVICE_TYPES[kind]:
            raise _Bad("device", f"device {key!r} is a {d.type}, not a source of {kind}")
        if self.sender_org is not None and d.owner_id != self.sender_org:
            raise _Bad("device", f"device {key!r} does not belong to the sending organization")
        return d

    def _place(self, obj: Mapping[str, Any], kinds: frozenset[str]) -> Place:
        key = _get(obj, "place")
        p = self.places.get(key) if isinstance(key, str) else None
        if p is None:
            raise _Bad("place", f"place {key!r} is not registered")
        if p.kind not in kinds:
            raise _Bad("place", f"place {key!r} is a {p.kind}, not a {' or '.join(sorted(kinds))}")
        if self.sender_org is not None and p.operator_id != self.sender_org:
            raise _Bad("place", f"place {key!r} is not operated by the sending organization")
        return p

    def _tank(self, obj: Mapping[str, Any], p: Place) -> str:
        tank = _str(obj, "tank", 32)
        if tank not in p.tanks:
            raise _Bad("tank", f"no nozzle at this place draws from tank {tank!r}")
        return tank

    def record(self, obj: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        kind = obj.get("kind")
        if kind == "scale.txn":
            d = self._device(obj, kind)
            return kind, (d.id, _ts(obj, "ts"), _int(obj, "seq"), _int(obj, "net_g", minimum=None),
                          _int(obj, "tare_g"), _int(obj, "unit_price_fen_per_kg"), _int(obj, "amount_fen"))
        if kind == "meter.reading":
            d = self._device(obj, kind)
            reg = _get(obj, "register")
            if isinstance(reg, bool) or not isinstance(reg, int | float):
                raise _Bad("register", "must be a number")
            milli = round(reg * 1000)
            if abs(reg * 1000 - milli) > 1e-6 * max(1.0, abs(reg)):
                raise _Bad("register", "at most 3 decimals")
            if milli < 0:
                raise _Bad("register", "must not be negative")
            if milli > INT64_MAX:
                raise _Bad("register", "too large")
            flags = 0
            raw_flags = obj.get("flags") or []
            if not isinstance(raw_flags, list):
                raise _Bad("flags", "must be a list")
            for f in raw_flags:
                if not isinstance(f, str) or f not in METER_FLAGS:
                    raise _Bad("flags", f"unknown flag {f!r} (use reverse, tamper, low_battery)")
                flags |= METER_FLAGS[f]
            return kind, (d.id, _ts(obj, "ts"), _int(obj, "seq"), milli, flags)
        if kind == "charger.session":
            d = self._device(obj, kind)
            start, end = _ts(obj, "start_ts"), _ts(obj, "end_ts")
            if end < start:
                raise _Bad("end_ts", "ends before it starts")
            ocmf = obj.get("ocmf") or ""
            if not isinstance(ocmf, str):
                raise _Bad("ocmf", "must be the OCMF string")
            return kind, (d.id, _int(obj, "seq"), _str(obj, "session_id", 64), start, end,
                          _int(obj, "meter_start_wh"), _int(obj, "meter_end_wh"), _int(obj, "energy_wh"),
                          _str(obj, "vehicle", 64), _opt_int(obj, "bms_energy_wh"), _opt_int(obj, "amount_fen"), ocmf)
        if kind == "dispenser.sale":
            d = self._device(obj, kind)
            return kind, (d.id, _ts(obj, "ts"), _int(obj, "seq"), _int(obj, "volume_ml"), _int(obj, "amount_fen"),
                          _int(obj, "totalizer_ml"))
        if kind == "scale.event":
            d = self._device(obj, kind)
            event = _get(obj, "event")
            if not isinstance(event, str) or event not in SCALE_EVENTS:
                raise _Bad("event", f"unknown event {event!r}")
            sw_id = obj.get("sw_id") or ""
            sw_hash = obj.get("sw_hash") or ""
            if not isinstance(sw_id, str) or not isinstance(sw_hash, str) or len(sw_id) > 64 or len(sw_hash) > 128:
                raise _Bad("sw_id", "sw_id and sw_hash must be strings (64 and 128 characters at most)")
            return kind, (d.id, _ts(obj, "ts"), _int(obj, "seq"), event, sw_id, sw_hash)
        if kind == "scale.recheck":
            p = self._place(obj, frozenset({"market"}))
            key = _get(obj, "device")
            scale = self.devices.get(key) if isinstance(key, str) else None
            if scale is None or scale.type != "scale":
                raise _Bad("device", f"device {key!r} is not a registered scale")
            if scale.place_id != p.id:
                raise _Bad("device", f"scale {key!r} does not stand at this market")
            return kind, (p.id, scale.id, _ts(obj, "ts"), _int(obj, "claimed_g"), _int(obj, "actual_g"))
        if kind in ("tank.reading", "tank.delivery"):
            p = self._place(obj, frozenset({"fuel_station"}))
            tank = self._tank(obj, p)
            if kind == "tank.delivery":
                return kind, (p.id, tank, _ts(obj, "ts"), _int(obj, "volume_ml"))
            temp = _get(obj, "temp_c")
            if isinstance(temp, bool) or not isinstance(temp, int | float) or not -60 <= temp <= 90:
                raise _Bad("temp_c", "must be a temperature in °C between -60 and 90")
            return kind, (p.id, tank, _ts(obj, "ts"), _int(obj, "volume_ml"), float(temp))
        raise _Bad("kind", f"unknown kind {kind!r} (allowed: {', '.join(KINDS)})")

    def parse(self, lines: Iterable[bytes | str], *, first_line: int = 1, result: ParseResult | None = None
              ) -> ParseResult:
        out = result if result is not None else ParseResult()
        n = first_line - 1
        for n, raw in enumerate(lines, start=first_line):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                out.rejected.append(Rejection(n, None, f"malformed JSON: {exc}", _text(raw)))
                continue
            if not isinstance(obj, dict):
                out.rejected.append(Rejection(n, None, "a line must be a JSON object", _text(raw)))
                continue
            try:
                kind, row = self.record(obj)
            except _Bad as bad:
                out.rejected.append(Rejection(n, bad.field, bad.reason, _text(raw)))
                continue
            out.rows[kind].append(row)
        out.lines = max(out.lines, n)
        return out


# --- the batch parser (fast path) -------------------------------------------------------------------------
#
# The high-volume kinds (scale transactions, meter readings, fuel sales) are checked column-wise: each line is
# decoded once, lines are grouped by kind, and every field of the group is checked as a whole column with
# NumPy (types, minimums, device look-ups in one dictionary of the devices allowed for the kind, times in
# the canonical form ``YYYY-MM-DDTHH:MM:SS±HH:MM`` converted without datetime objects).  A line the columns
# cannot vouch for -- any problem, or merely an unusual form such as a fractional second -- goes through
# ``Parser.record``, the per-line check above, so every rejection keeps its exact field and reason.
# tests/monitoring/test_ingest_fast_path.py corrupts lines at random and requires both parsers to agree.

COLUMNAR: dict[str, tuple[tuple[str, str], ...]] = {
    # kind: (field, check) in the order of ROW_COLUMNS
    "scale.txn": (("device", "device"), ("ts", "ts"), ("seq", "count"), ("net_g", "int"), ("tare_g", "count"),
                  ("unit_price_fen_per_kg", "count"), ("amount_fen", "count")),
    "dispenser.sale": (("device", "device"), ("ts", "ts"), ("seq", "count"), ("volume_ml", "count"),
                       ("amount_fen", "count"), ("totalizer_ml", "count")),
    "meter.reading": (("device", "device"), ("ts", "ts"), ("seq", "count"), ("register", "register"),
                      ("flags", "flags")),
}
_DECODE_FAILED = object()
_TS_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24])
_TS_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":"), 22: ord(":")}
_TS_FILLER = "0000-00-00T00:00:00+00:00"
_I64 = npt.NDArray[np.int64]
_BOOL = npt.NDArray[np.bool_]


def _int_column(values: list[Any], minimum: int | None) -> tuple[_I64, _BOOL]:
    """Whole numbers (not bool, not float) at least ``minimum``, within int64; the mask marks the others."""
    n = len(values)
    if n and set(map(type, values)) == {int}:
        try:
            arr = np.array(values, dtype=np.int64)
        except OverflowError:
            pass
        else:
            return arr, (arr < minimum) if minimum is not None else np.zeros(n, dtype=bool)
    lo = -INT64_MAX - 1 if minimum is None else max(minimum, -INT64_MAX - 1)
    ok = np.fromiter((type(v) is int and lo <= v <= INT64_MAX for v in values), dtype=bool, count=n)
    return np.array([v if k else 0 for v, k in zip(values, ok.tolist(), strict=True)], dtype=np.int64), ~ok


def days_from_civil(y: _I64, m: _I64, d: _I64) -> _I64:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), vectorised."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return np.asarray(era * 146097 + doe - 719468, dtype=np.int64)


def _ts_column(values: list[Any]) -> tuple[_I64, _BOOL]:
    """Times in the canonical RFC 3339 form with a numeric offset, as microseconds since the epoch (UTC);
    the mask marks every other value (they go to the per-line check, which may still accept them)."""
    n = len(values)
    if not n:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    strs = values if set(map(type, values)) == {str} else [v if type(v) is str else "" for v in values]
    ok = np.fromiter(map(len, strs), dtype=np.int64, count=n) == 25
    text = "".join(strs if ok.all() else [v if len(v) == 25 else _TS_FILLER for v in strs])
    a = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8).reshape(n, 25)
    dig = a[:, _TS_DIGITS].astype(np.int64) - 48
    ok &= ((dig >= 0) & (dig <= 9)).all(axis=1)
    for pos, ch in _TS_SEPARATORS.items():
        ok &= a[:, pos] == ch
    sign = a[:, 19]
    ok &= (sign == ord("+")) | (sign == ord("-"))
    y = dig[:, 0] * 1000 + dig[:, 1] * 100 + dig[:, 2] * 10 + dig[:, 3]
    mo = dig[:, 4] * 10 + dig[:, 5]
    d = dig[:, 6] * 10 + dig[:, 7]
    hh = dig[:, 8] * 10 + dig[:, 9]
    mi = dig[:, 10] * 10 + dig[:, 11]
    ss = dig[:, 12] * 10 + dig[:, 13]
    oh = dig[:, 14] * 10 + dig[:, 15]
    om = dig[:, 16] * 10 + dig[:, 17]
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(mo, 0, 12)] + (leap & (mo == 2))
    ok &= (y >= 1900) & (y <= 2999) & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= dim)
    ok &= (hh <= 23) & (mi <= 59) & (ss <= 59) & (oh <= 23) & (om <= 59)
    offset = np.where(sign == ord("-"), -1, 1) * (oh * 3600 + om * 60)
    secs = days_from_civil(y, np.clip(mo, 1, 12), d) * 86400 + hh * 3600 + mi * 60 + ss - offset
    return np.where(ok, secs, 0) * 1_000_000, ~ok


def _register_column(values: list[Any]) -> tuple[_I64, _BOOL]:
    """Meter registers (numbers, at most 3 decimals, not negative) in thousandths, as ``Parser.record``
    computes them; values of 10¹² or more are left to it (beyond the exactness of float64 × 1000)."""
    n = len(values)
    types = set(map(type, values))
    if types <= {int, float}:
        ok = np.ones(n, dtype=bool)
        reg = np.array(values, dtype=np.float64) if n else np.zeros(0)
    else:
        ok = np.fromiter((type(v) is int or type(v) is float for v in values), dtype=bool, count=n)
        reg = np.array([v if k else 0.0 for v, k in zip(values, ok.tolist(), strict=True)], dtype=np.float64)
    ok &= np.abs(reg) < 1e12
    reg = np.where(ok, reg, 0.0)
    scaled = reg * 1000
    milli = np.rint(scaled)
    ok &= ~(np.abs(scaled - milli) > 1e-6 * np.maximum(1.0, np.abs(reg))) & (milli >= 0)
    return milli.astype(np.int64), ~ok


def _flag_bits(v: Any) -> int:
    if not v:
        return 0
    if type(v) is not list:
        return -1
    bits = 0
    for f in v:
        if type(f) is not str or f not in METER_FLAGS:
            return -1
        bits |= METER_FLAGS[f]
    return bits


def _flags_column(values: list[Any]) -> tuple[_I64, _BOOL]:
    if values.count(None) == len(values):
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    bits = np.array([_flag_bits(v) for v in values], dtype=np.int64)
    return np.maximum(bits, 0), bits < 0


_ALLOWED_CACHE: dict[tuple[int, int | None, str], tuple[Mapping[str, Device], dict[str, int]]] = {}


def _allowed_devices(devices: Mapping[str, Device], sender_org: int | None, kind: str) -> dict[str, int]:
    """device_id → instrument id of the devices that may send ``kind`` (and belong to the sender), cached
    per registry snapshot (the MQTT worker reuses one snapshot for many batches)."""
    key = (id(devices), sender_org, kind)
    hit = _ALLOWED_CACHE.get(key)
    if hit is not None and hit[0] is devices:
        return hit[1]
    types = DEVICE_TYPES[kind]
    allowed = {k: d.id for k, d in devices.items()
               if d.type in types and (sender_org is None or d.owner_id == sender_org)}
    if len(_ALLOWED_CACHE) > 32:
        _ALLOWED_CACHE.clear()
    _ALLOWED_CACHE[key] = (devices, allowed)
    return allowed


def _device_column(values: list[Any], allowed: dict[str, int]) -> tuple[_I64, _BOOL]:
    get = allowed.get
    if set(map(type, values)) <= {str}:
        ids = np.fromiter(map(get, values, repeat(-1)), dtype=np.int64, count=len(values))
    else:
        ids = np.array([get(v, -1) if type(v) is str else -1 for v in values], dtype=np.int64)
    return ids, ids < 0


def _datetime_us(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def _group_by_kind(objs: list[Any]) -> tuple[dict[str, list[int]], list[int]]:
    """Line indices by ``kind`` for the kinds of ``COLUMNAR``, and those of every other line (not an object,
    another kind, no kind).  When every line is an object, the kinds are read and compared in C."""
    try:
        kinds = list(map(dict.get, objs, repeat("kind")))
    except TypeError:  # a line that is not a JSON object
        kinds = [o.get("kind") if type(o) is dict else None for o in objs]
    arr = np.fromiter(kinds, dtype=object, count=len(kinds))  # never nested, whatever the values are
    groups: dict[str, list[int]] = {}
    rest = np.ones(len(objs), dtype=bool)
    for kind in COLUMNAR:
        hit = arr == kind
        if hit.any():
            groups[kind] = np.flatnonzero(hit).tolist()
            rest &= ~hit
    return groups, np.flatnonzero(rest).tolist()


class BatchParser(Parser):
    """The per-line parser's results, column-wise for the high-volume kinds (see ``COLUMNAR``).

    >>> devs = {"WM-1": Device(id=4, type="water_meter", owner_id=3, place_id=None)}
    >>> r = BatchParser(devices=devs, places={}).parse_batch([
    ...     b'{"kind":"meter.reading","device":"WM-1","ts":"2026-11-01T08:00:00+08:00","seq":7,"register":1.5}',
    ...     b'{"kind":"meter.reading","device":"WM-1","ts":"2026-11-01T08:00:00+08:00","seq":8,"register":-1}'])
    >>> r.columns["meter.reading"]["register_milli"].tolist(), [(x.line, x.field) for x in r.rejected]
    ([1500], [(2, 'register')])
    """

    def parse_batch(self, lines: list[bytes | str], *, first_line: int = 1) -> ParseResult:
        out = ParseResult()
        n_lines = len(lines)
        try:
            objs: list[Any] = list(map(orjson.loads, lines))
        except orjson.JSONDecodeError:
            objs = []
            for raw in lines:
                try:
                    objs.append(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    objs.append(_DECODE_FAILED)
        groups, slow = _group_by_kind(objs)
        slow_rows: dict[str, list[tuple[int, tuple[Any, ...]]]] = {k: [] for k in COLUMNAR}
        fast: dict[str, tuple[_I64, dict[str, npt.NDArray[Any]]]] = {}
        for kind, idx in groups.items():
            good, cols = self._columns(kind, list(map(objs.__getitem__, idx)))
            index = np.array(idx, dtype=np.int64)
            slow.extend(index[~good].tolist())
            fast[kind] = (index[good] + first_line, {c: v[good] for c, v in cols.items()})
        slow.sort()
        for i in slow:
            raw, obj, n = lines[i], objs[i], first_line + i
            if obj is _DECODE_FAILED or not raw.strip():
                if not raw.strip():
                    continue
                try:
                    orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    out.rejected.append(Rejection(n, None, f"malformed JSON: {exc}", _text(raw)))
                continue
            if not isinstance(obj, dict):
                out.rejected.append(Rejection(n, None, "a line must be a JSON object", _text(raw)))
                continue
            try:
                kind, row = self.record(obj)
            except _Bad as bad:
                out.rejected.append(Rejection(n, bad.field, bad.reason, _text(raw)))
                continue
            if kind in slow_rows:
                slow_rows[kind].append((n, row))
            else:
                out.rows[kind].append(row)
        for kind in COLUMNAR:
            if kind in fast or slow_rows[kind]:
                out.columns[kind] = _merge(kind, fast.get(kind), slow_rows[kind])
        out.lines = first_line + n_lines - 1 if n_lines else first_line - 1
        return out

    def _columns(self, kind: str, objs: list[dict[str, Any]]) -> tuple[_BOOL, dict[str, npt.NDArray[Any]]]:
        bad = np.zeros(len(objs), dtype=bool)
        cols: dict[str, npt.NDArray[Any]] = {}
        for (name, check), column in zip(COLUMNAR[kind], ROW_COLUMNS[kind], strict=True):
            values = list(map(dict.get, objs, repeat(name)))
            if check == "device":
                arr, b = _device_column(values, _allowed_devices(self.devices, self.sender_org, kind))
            elif check == "ts":
                arr, b = _ts_column(values)
            elif check == "count":
                arr, b = _int_column(values, 0)
            elif check == "int":
                arr, b = _int_column(values, None)
            elif check == "register":
                arr, b = _register_column(values)
            else:
                arr, b = _flags_column(values)
            cols[column] = arr
            bad |= b
        return ~bad, cols


def _merge(kind: str, fast: tuple[_I64, dict[str, npt.NDArray[Any]]] | None,
           slow: list[tuple[int, tuple[Any, ...]]]) -> dict[str, npt.NDArray[Any]]:
    """The fast rows and the rows the per-line check accepted, as one set of columns in line order."""
    names = ROW_COLUMNS[kind]
    line = fast[0] if fast else np.zeros(0, dtype=np.int64)
    cols = dict(fast[1]) if fast else {c: np.zeros(0, dtype=np.int64) for c in names}
    if slow:
        extra_line = np.array([n for n, _ in slow], dtype=np.int64)
        for j, c in enumerate(names):
            vals = [r[j] for _, r in slow]
            if c in TIME_COLUMNS:
                vals = [_datetime_us(v) for v in vals]
            cols[c] = np.concatenate([cols[c], np.array(vals, dtype=np.int64)])
        line = np.concatenate([line, extra_line])
        order = np.argsort(line, kind="stable")
        line = line[order]
        cols = {c: v[order] for c, v in cols.items()}
    return {**cols, "line": line}


def _text(raw: bytes | str) -> str:
    s = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return s.rstrip("\r\n")[:4000]


def parse(lines: Iterable[bytes | str], *, devices: Mapping[str, Device], places: Mapping[str, Place],
          sender_org: int | None = None) -> ParseResult:
    return Parser(devices=devices, places=places, sender_org=sender_org).parse(lines)
