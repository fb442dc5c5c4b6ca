"""Input of more than one batch is parsed in a forked child process (ADR 0010): the results must be those
of parsing in-process -- line numbers counted across batches, every batch stored once -- and a child that
dies or fails must stop the ingest with an error, not hang it or lose a batch silently."""

from __future__ import annotations

import json
import os
import signal

import pytest

from jiliang.engine.telemetry import BatchParser
from jiliang.monitoring import ingest
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import MeterReading, Quarantine, ScaleTxn
from tests.world import World

pytestmark = pytest.mark.django_db
T = "2026-11-01T08:0{}:00+08:00"


def records(n: int) -> list[bytes]:
    """n lines alternating scale transactions and meter readings; every 7th line is bad."""
    out = []
    for i in range(n):
        if i % 7 == 6:
            out.append(b'{"kind": "scale.txn", "device": "SC-F-1"')  # malformed
        elif i % 2:
            out.append(json.dumps({"kind": "meter.reading", "device": "WM-N-1", "ts": T.format(i % 10),
                                   "seq": i, "register": i / 10}).encode())
        else:
            out.append(json.dumps({"kind": "scale.txn", "device": "SC-F-1", "ts": T.format(i % 10), "seq": i,
                                   "net_g": 100 + i, "tare_g": 0, "unit_price_fen_per_kg": 1000,
                                   "amount_fen": 100 + i}).encode())
    return out


def test_batches_parsed_in_a_child_match_one_batch_parsed_here(world: World) -> None:
    assert ingest._FORK is not None, "this platform forks (Linux)"
    lines = records(50)
    snapshot = ingest.registry_snapshot()
    expected = BatchParser(devices=snapshot[0], places=snapshot[1]).parse_batch(lines)
    rep = ingest_lines(iter(lines), source="many", batch_size=6, snapshot=snapshot)  # nine batches, in a child
    assert rep.lines == 50 and rep.rejected == len(expected.rejected) == 7
    assert [line for line, _f, _r in rep.rejections] == [r.line for r in expected.rejected] == list(range(7, 51, 7))
    assert rep.accepted == expected.accepted == 43
    assert sorted(ScaleTxn.objects.values_list("seq", flat=True)) == [i for i in range(0, 50, 2) if i % 7 != 6]
    assert MeterReading.objects.count() == len([i for i in range(1, 50, 2) if i % 7 != 6])
    assert sorted(Quarantine.objects.values_list("line_no", flat=True)) == list(range(7, 51, 7))
    again = ingest_lines(iter(lines), source="many", batch_size=6, snapshot=snapshot)
    assert (again.accepted, again.duplicates) == (0, 43)


def test_a_child_that_dies_stops_the_ingest(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    real = BatchParser.parse_batch

    def die_on_third(self: BatchParser, lines: list[bytes | str], *, first_line: int = 1) -> object:
        if first_line > 10:
            os.kill(os.getpid(), signal.SIGKILL)  # in the child: as if the kernel killed it
        return real(self, lines, first_line=first_line)

    monkeypatch.setattr(BatchParser, "parse_batch", die_on_third)
    with pytest.raises(RuntimeError, match="parsing process ended unexpectedly"):
        ingest_lines(iter(records(40)), source="dies", batch_size=5)
    # whole batches from before it died were stored (how many depends on what reached the pipe before the
    # kill: the ingest never acknowledged the rest), none from the batch it died on or after
    good = ScaleTxn.objects.count() + MeterReading.objects.count()
    assert good + Quarantine.objects.count() in (0, 5, 10)
    monkeypatch.undo()
    rep = ingest_lines(iter(records(40)), source="retry", batch_size=5)  # the sender retries everything
    assert (rep.rejected, rep.accepted, rep.duplicates) == (5, 35 - good, good)


def test_a_parser_error_in_the_child_is_raised_with_its_traceback(world: World,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: BatchParser, lines: list[bytes | str], *, first_line: int = 1) -> object:
        raise KeyError("a bug")

    monkeypatch.setattr(BatchParser, "parse_batch", broken)
    with pytest.raises(RuntimeError, match=r"(?s)parsing lines from 1:.*KeyError: 'a bug'"):
        ingest_lines(iter(records(12)), source="bug", batch_size=5)
