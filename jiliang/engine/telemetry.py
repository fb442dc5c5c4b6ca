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
from typing import Any

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
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    rejected: list[Rejection] = field(default_factory=list)
    lines: int = 0

    @property
    def accepted(self) -> int:
        return sum(len(v) for v in self.rows.values())


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
    if v > INT64_MAX:
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
    return t.astimezone(UTC)


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
            flags = 0
            raw_flags = obj.get("flags") or []
            if not isinstance(raw_flags, list):
                raise _Bad("flags", "must be a list")
            for f in raw_flags:
                if f not in METER_FLAGS:
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
            if event not in SCALE_EVENTS:
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


def _text(raw: bytes | str) -> str:
    s = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return s.rstrip("\r\n")[:4000]


def parse(lines: Iterable[bytes | str], *, devices: Mapping[str, Device], places: Mapping[str, Place],
          sender_org: int | None = None) -> ParseResult:
    return Parser(devices=devices, places=places, sender_org=sender_org).parse(lines)
