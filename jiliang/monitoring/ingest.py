"""Storing telemetry: validated rows go to their typed table, rejected lines to the quarantine.

Records are processed in batches; each batch commits its rows and its rejections in one transaction, and
only then is the batch acknowledged (the command's counts, the HTTP response, the MQTT PUBACK).  A repeated
(``device``, ``seq``) — or (place, tank, time) for tank records — is ignored, so a sender that retries
after a crash duplicates nothing.  SQLite uses ``INSERT OR IGNORE``; PostgreSQL COPYs each batch into a
temporary staging table and inserts from it with ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from jiliang.core import bulk
from jiliang.engine.telemetry import DEVICE_TYPES, KINDS, Device, Parser, ParseResult, Place
from jiliang.monitoring.models import (
    ChargerSession,
    DispenserSale,
    MeterReading,
    Quarantine,
    ScaleEvent,
    ScaleRecheck,
    ScaleTxn,
    TankDelivery,
    TankReading,
)
from jiliang.registry.models import Instrument
from jiliang.registry.models import Place as PlaceModel

TABLES: dict[str, tuple[type[models.Model], tuple[str, ...], tuple[str, ...]]] = {
    # kind: (model, columns in the parser's row order, conflict key)
    "scale.txn": (ScaleTxn, ("device_id", "ts", "seq", "net_g", "tare_g", "unit_price_fen_per_kg", "amount_fen"),
                  ("device_id", "seq")),
    "scale.event": (ScaleEvent, ("device_id", "ts", "seq", "event", "sw_id", "sw_hash"), ("device_id", "seq")),
    "scale.recheck": (ScaleRecheck, ("place_id", "device_id", "ts", "claimed_g", "actual_g"),
                      ("device_id", "ts", "place_id")),
    "charger.session": (ChargerSession, ("device_id", "seq", "session_id", "start_ts", "end_ts", "meter_start_wh",
                                         "meter_end_wh", "energy_wh", "vehicle", "bms_energy_wh", "amount_fen",
                                         "ocmf"), ("device_id", "seq")),
    "dispenser.sale": (DispenserSale, ("device_id", "ts", "seq", "volume_ml", "amount_fen", "totalizer_ml"),
                       ("device_id", "seq")),
    "tank.reading": (TankReading, ("place_id", "tank", "ts", "volume_ml", "temp_c"), ("place_id", "tank", "ts")),
    "tank.delivery": (TankDelivery, ("place_id", "tank", "ts", "volume_ml"), ("place_id", "tank", "ts")),
    "meter.reading": (MeterReading, ("device_id", "ts", "seq", "register_milli", "flags"), ("device_id", "seq")),
}
assert set(TABLES) == set(KINDS)

BATCH = 50_000


@dataclass
class IngestReport:
    lines: int = 0
    accepted: int = 0          # new records stored
    duplicates: int = 0        # valid records already stored (idempotent repeats)
    rejected: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejections: list[tuple[int, str | None, str]] = field(default_factory=list)  # first few, for display

    def as_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": self.rejected, "by_kind": dict(self.by_kind),
                "rejections": [{"line": ln, "field": f, "reason": r} for ln, f, r in self.rejections]}


def registry_snapshot() -> tuple[dict[str, Device], dict[str, Place]]:
    """Every instrument that can send telemetry and every place, as the parser needs them."""
    types: set[str] = set().union(*DEVICE_TYPES.values())
    devices: dict[str, Device] = {}
    tanks: dict[int, set[str]] = defaultdict(set)
    for dev_id, pk, itype, owner, place, tank in Instrument.objects.filter(instrument_type_id__in=types).values_list(
            "device_id", "id", "instrument_type_id", "owner_id", "place_id", "tank").iterator(chunk_size=20000):
        devices[dev_id] = Device(pk, itype, owner, place)
        if tank and place is not None:
            tanks[place].add(tank)
    places = {key: Place(pk, kind, op, frozenset(tanks.get(pk, ()))) for key, pk, kind, op in
              PlaceModel.objects.values_list("key", "id", "kind", "operator_id").iterator(chunk_size=20000)}
    return devices, places


def _sqlite_row(row: tuple[Any, ...]) -> list[Any]:
    return [v.replace(tzinfo=None).isoformat(" ") if isinstance(v, dt.datetime) else v for v in row]


def _store(kind: str, rows: list[tuple[Any, ...]]) -> int:
    """Insert rows, ignoring ones already stored; returns how many were new."""
    if not rows:
        return 0
    model, cols, key = TABLES[kind]
    table = model._meta.db_table
    names = ", ".join(f'"{c}"' for c in cols)
    with connection.cursor() as cur:
        if bulk.is_postgres():
            stage = f"stage_{table}"
            # only the loaded columns, without constraints: the target's own unique key does the dedupe
            cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" ON COMMIT DELETE ROWS AS '  # noqa: S608
                        f'SELECT {names} FROM "{table}" WITH NO DATA')
            raw = cur.cursor
            with raw.copy(f'COPY "{stage}" ({names}) FROM STDIN') as copy:
                for r in rows:
                    copy.write_row(r)
            conflict = ", ".join(f'"{c}"' for c in key)
            cur.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "{stage}" '  # noqa: S608
                        f"ON CONFLICT ({conflict}) DO NOTHING")
            inserted = cur.rowcount
            cur.execute(f'TRUNCATE "{stage}"')
            return int(inserted)
        marks = ", ".join(["%s"] * len(cols))
        before = connection.connection.total_changes
        cur.executemany(f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})',  # noqa: S608
                        [_sqlite_row(r) for r in rows])
        return int(connection.connection.total_changes - before)


def _quarantine(result: ParseResult, source: str, received: dt.datetime) -> None:
    if not result.rejected:
        return
    ids = bulk.allocate_ids(Quarantine, len(result.rejected))
    bulk.insert_rows(Quarantine, ("id", "received_at", "source", "line_no", "field", "reason", "raw"),
                     ([i, received, source[:100], r.line, (r.field or "")[:50], r.reason[:300], r.raw]
                      for i, r in zip(ids, result.rejected, strict=True)))
    bulk.bump_sequence(Quarantine)


def _batches(lines: Iterable[bytes | str], size: int) -> Iterator[list[bytes | str]]:
    batch: list[bytes | str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest_lines(lines: Iterable[bytes | str], *, source: str, sender_org: int | None = None,
                 snapshot: tuple[dict[str, Device], dict[str, Place]] | None = None, batch_size: int = BATCH,
                 keep_rejections: int = 100) -> IngestReport:
    """Validate, store and quarantine NDJSON lines batch by batch; each batch commits on its own."""
    devices, places = snapshot if snapshot is not None else registry_snapshot()
    parser = Parser(devices=devices, places=places, sender_org=sender_org)
    report = IngestReport()
    first = 1
    for chunk in _batches(lines, batch_size):
        result = parser.parse(chunk, first_line=first)
        first += len(chunk)
        received = timezone.now()
        with transaction.atomic():
            new = 0
            for kind, rows in result.rows.items():
                n = _store(kind, rows)
                report.by_kind[kind] += n
                new += n
            _quarantine(result, source, received)
        report.lines = first - 1
        report.accepted += new
        report.duplicates += result.accepted - new
        report.rejected += len(result.rejected)
        room = keep_rejections - len(report.rejections)
        report.rejections += [(r.line, r.field, r.reason) for r in result.rejected[:max(room, 0)]]
    return report
