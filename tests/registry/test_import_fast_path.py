"""The instrument import's fast path (ADR 0009) must judge every row exactly as the row-by-row check does.

A file of valid rows is corrupted at random, one or two fields per row, in every way the rules know; the
import (with --skip-invalid) must then create exactly the rows the reference check accepts and reject
the others with exactly the reference's problems.  Runs on SQLite and, in CI's second pass, PostgreSQL
(where the rows stream through COPY from a second thread)."""

from __future__ import annotations

import random

import pytest

from jiliang.accounts.models import SystemPrincipal
from jiliang.accounts.roles import Scope
from jiliang.core.changelog import history_for
from jiliang.core.errors import JiliangError
from jiliang.core.models import ChangeLog
from jiliang.registry import importing
from jiliang.registry.importing import _check_instrument, _instrument_context, _RowCheck, import_instruments
from jiliang.registry.models import Instrument, InstrumentModel
from jiliang.registry.tabular import Table
from tests.world import World, make_uscc

pytestmark = pytest.mark.django_db
ADMIN = SystemPrincipal("test")
COLS = ["device_id", "instrument_type", "maker_uscc", "model", "serial", "owner_uscc", "place_key", "status",
        "accuracy_class", "params", "install_date", "tank", "sw_id", "sw_hash", "public_key_hex"]


def valid_row(w: World, n: int) -> dict[str, str]:
    kind = n % 3
    if kind == 0:
        return {"device_id": f"SC-Q-{n}", "instrument_type": "scale", "maker_uscc": w.orgs["maker"].uscc,
                "model": "ACS-30", "serial": f"Q{n}", "owner_uscc": w.orgs["stall_f"].uscc, "place_key": "MKT-F",
                "status": "in_service", "accuracy_class": "III", "params": '{"e_g": 10, "max_g": 30000}',
                "install_date": "2025-06-01", "tank": "", "sw_id": "V1", "sw_hash": "ab" * 32, "public_key_hex": ""}
    if kind == 1:
        return {"device_id": f"WM-Q-{n}", "instrument_type": "water_meter", "maker_uscc": w.orgs["maker"].uscc,
                "model": "LXS-20", "serial": f"W{n}", "owner_uscc": w.orgs["water"].uscc, "place_key": "RES-N",
                "status": "in_service", "accuracy_class": "2", "params": '{"Q3_m3h": 4, "R": 100}',
                "install_date": "2024-01-31", "tank": "", "sw_id": "", "sw_hash": "", "public_key_hex": ""}
    return {"device_id": f"ST-Q-{n}", "instrument_type": "water_meter", "maker_uscc": w.orgs["maker"].uscc,
            "model": "LXS-20", "serial": f"S{n}", "owner_uscc": w.orgs["water"].uscc, "place_key": "",
            "status": "in_stock", "accuracy_class": "", "params": "", "install_date": "", "tank": "", "sw_id": "",
            "sw_hash": "", "public_key_hex": "cafe" if n % 2 else ""}


def corruptions(w: World, n: int) -> list[tuple[str, str]]:
    uscc = w.orgs["stall_f"].uscc
    bad_check = uscc[:17] + ("A" if uscc[17] != "A" else "B")
    return [
        ("device_id", ""), ("device_id", "bad id!"), ("device_id", "X" * 65), ("device_id", "SC-F-1"),
        ("device_id", "SC-Q-0"), ("instrument_type", "scale_x"), ("instrument_type", ""),
        ("maker_uscc", make_uscc("440305", 777)), ("maker_uscc", w.orgs["stall_f"].uscc), ("maker_uscc", ""),
        ("maker_uscc", bad_check), ("model", ""), ("model", "M" * 101), ("serial", ""), ("serial", "S-SC-F-1"),
        ("serial", "Q0"), ("serial", "s" * 65), ("owner_uscc", bad_check), ("owner_uscc", make_uscc("440304", 999)),
        ("owner_uscc", ""), ("status", "broken"), ("status", ""), ("place_key", "NOPE"), ("place_key", ""),
        ("accuracy_class", "IX"), ("accuracy_class", "C" * 11), ("params", "{bad json"), ("params", "[1, 2]"),
        ("params", '{"e_g": "five"}'), ("install_date", "2025-02-30"), ("install_date", "2999-01-01"),
        ("install_date", "01/06/2025"), ("tank", "T1"), ("tank", "T" * 33), ("sw_id", "v" * 65),
        ("sw_hash", "h" * 129), ("public_key_hex", "xyz"), ("public_key_hex", "a" * 401),
        ("status", "in_stock"), ("accuracy_class", ""), ("install_date", "2025-06-01T08:00:00+08:00"),
        ("device_id", f"OK-{n}"),  # harmless changes: the row stays valid
    ]


def build(w: World, seed: int, rows: int) -> tuple[Table, list[dict[str, str]]]:
    rng = random.Random(seed)
    records = []
    for n in range(rows):
        rec = valid_row(w, n)
        if n >= 3 and rng.random() < 0.6:
            for _ in range(rng.choice((1, 1, 2))):
                field, value = rng.choice(corruptions(w, n))
                rec[field] = value
        records.append(rec)
    return Table(COLS, [(k + 2, r) for k, r in enumerate(records)]), records


def reference(table: Table) -> dict[int, list[tuple[str | None, str]]]:
    """Row number -> problems (empty when valid), by the row-by-row check alone, in file order."""
    ctx = _instrument_context(table, Scope.of(ADMIN))
    out: dict[int, list[tuple[str | None, str]]] = {}
    for row, values in table.rows:
        ctx.first_device.setdefault(values["device_id"], row)
        ctx.first_serial.setdefault((values["maker_uscc"], values["serial"]), row)
        chk = _RowCheck(row, values)
        _check_instrument(chk, ctx)
        out[row] = [(p.field, p.reason) for p in chk.problems]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_path_judges_every_row_like_the_reference(world: World, seed: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "_CHUNK", 37)  # many chunks: duplicates and first occurrences cross them
    table, records = build(world, seed, 400)
    expected = reference(table)
    assert 100 < sum(1 for p in expected.values() if p) < 300, "the corruption mix should reject many rows"
    before = Instrument.objects.count()
    result = import_instruments(table=table, actor=ADMIN, skip_invalid=True)
    got = {row: [(p.field, p.reason) for p in problems] for row, _, problems in result.rejected}
    assert got == {row: p for row, p in expected.items() if p}
    created = {r["device_id"] for row, r in zip(table.rownums, records, strict=True) if not expected[row]}
    assert result.created == len(created) == Instrument.objects.count() - before
    new = Instrument.objects.filter(device_id__in=created)
    assert new.count() == len(created)
    # ids are one consecutive block (chunks included), so a following import cannot collide with them
    got_ids = sorted(new.values_list("id", flat=True))
    assert got_ids == list(range(got_ids[0], got_ids[0] + len(got_ids)))
    again, _ = build(world, seed + 100, 120)
    for _, values in again.rows:  # fresh device ids and serials: the second file is valid where the first was
        values["device_id"] = "N" + values["device_id"]
        values["serial"] = "N" + values["serial"]
    second = import_instruments(table=again, actor=ADMIN, skip_invalid=True)
    assert second.created > 0 and Instrument.objects.count() == before + result.created + second.created
    # every created row is what the file said, and the change log has its values under its own id
    by_dev = {r["device_id"]: r for row, r in zip(table.rownums, records, strict=True) if not expected[row]}
    for inst in new.select_related("maker", "owner", "place", "model")[:60]:
        rec = by_dev[inst.device_id]
        assert inst.serial == rec["serial"] and inst.owner.uscc == rec["owner_uscc"]
        assert (inst.place.key if inst.place else "") == rec["place_key"] and inst.status == rec["status"]
        assert inst.model.name == rec["model"] and inst.sw_hash == rec["sw_hash"]
        (entry,) = [e for e in history_for(inst) if e.action == "import"]
        assert entry.after["id"] == inst.pk and entry.after["device_id"] == inst.device_id
    assert len(set(new.values_list("qr_token", flat=True))) == len(created)


def test_a_refused_file_writes_nothing_even_after_chunks_were_streamed(world: World,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The bad row is the last one: earlier chunks have already gone to the database (through COPY on
    PostgreSQL) when it is found -- the whole transaction must still roll back."""
    monkeypatch.setattr(importing, "_CHUNK", 10)
    records = [valid_row(world, n) for n in range(95)]
    records[-1]["install_date"] = "2025-13-01"
    table = Table(COLS, [(k + 2, r) for k, r in enumerate(records)])
    counts = (Instrument.objects.count(), InstrumentModel.objects.count(), ChangeLog.objects.count())
    with pytest.raises(JiliangError) as exc:
        import_instruments(table=table, actor=ADMIN)
    assert [(p.row, p.field) for p in exc.value.details] == [(96, "install_date")]
    assert (Instrument.objects.count(), InstrumentModel.objects.count(), ChangeLog.objects.count()) == counts
    # and the connection is usable afterwards: the same file without the bad row goes in
    records.pop()
    table = Table(COLS, [(k + 2, r) for k, r in enumerate(records)])
    assert import_instruments(table=table, actor=ADMIN).created == 94
    entries = ChangeLog.objects.filter(model="instrument", action="import")
    assert sum(e.after["count"] for e in entries) == 94


def test_models_of_rejected_rows_are_not_left_behind(world: World) -> None:
    rec = valid_row(world, 0) | {"model": "ONLY-IN-A-BAD-ROW", "install_date": "2025-02-30"}
    good = valid_row(world, 3)
    table = Table(COLS, [(2, rec), (3, good)])
    result = import_instruments(table=table, actor=ADMIN, skip_invalid=True)
    assert result.created == 1 and not InstrumentModel.objects.filter(name="ONLY-IN-A-BAD-ROW").exists()
