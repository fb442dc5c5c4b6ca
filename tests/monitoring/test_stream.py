"""The NATS JetStream feed between ingestion and the detector workers, against the machine's real NATS server:
the stream path gives the alerts the database path gives; repeats from a crashed publisher or consumer
change nothing; a message that arrives before its predecessor waits.  Each test has its own stream and
subjects, deleted afterwards."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("nats")

from jiliang.engine.streams import encode_batch
from jiliang.monitoring import stream as st
from jiliang.monitoring.detection import run_detectors
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert, DetectorCursor
from jiliang.simulation.city import generate_city
from jiliang.simulation.telemetry import TelemetrySpec, generate_telemetry

pytestmark = [pytest.mark.nats, pytest.mark.django_db(transaction=True)]
URL = "nats://127.0.0.1:4222"
SEED = 20261123
AS_OF = dt.date(2026, 11, 23)


def _server_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def make_link() -> Iterator[Any]:
    if not _server_up():
        if os.environ.get("JILIANG_REQUIRE_SERVICES") == "1":
            pytest.fail("NATS is not running on 127.0.0.1:4222")
        pytest.skip("NATS is not running on 127.0.0.1:4222")
    tag = uuid.uuid4().hex[:10]
    links: list[st.JetStreamLink] = []

    def make(**kw: Any) -> st.JetStreamLink:
        link = st.JetStreamLink(URL, stream=f"JT_{tag}", prefix=f"jt{tag}.telemetry", **kw)
        links.append(link)
        return link

    yield make
    for link in links:
        if link._thread.is_alive():
            with contextlib.suppress(Exception):  # already deleted by an earlier link of the test
                link._call(link.js.delete_stream(link.stream))
            link.close()


@pytest.fixture
def city_records() -> list[str]:
    """A small city with a week of telemetry and more faults than usual, so every detector kind alerts."""
    from jiliang.simulation.demo import build_demo

    build_demo(scale="small", seed=SEED, fresh=True, progress=False, as_of=AS_OF, with_telemetry=False)
    city = generate_city("small", SEED, as_of=AS_OF)
    spec = TelemetrySpec(days=5, scale_txns_per_day=20, cheat_share=0.05, padding_share=0.05,
                         charger_backwards_share=0.05, stuck_share=0.03, reversed_share=0.03, leak_share=0.1,
                         hourly_meter_share=0.2)
    lines, _truth = generate_telemetry(city, seed=3, spec=spec)
    return lines


def _alerts() -> set[tuple[str, str]]:
    return set(Alert.objects.values_list("detector", "device__device_id"))


def _reset_detection() -> None:
    Alert.objects.all().delete()
    DetectorCursor.objects.all().delete()


def _ingest_in_parts(lines: list[str], parts: int) -> None:
    step = -(-len(lines) // parts)
    for i in range(0, len(lines), step):
        assert ingest_lines([x.encode() for x in lines[i:i + step]], source="t").rejected == 0


def test_stream_path_gives_the_database_paths_alerts(make_link: Any, city_records: list[str]) -> None:
    _ingest_in_parts(city_records, 3)
    run_detectors()
    expected = _alerts()
    assert {d for d, _ in expected} >= {"scale.amount_mismatch", "meter.reverse_flow", "meter.stuck_register",
                                        "charger.register_continuity"}
    _reset_detection()

    link = make_link(partitions=3)
    link.max_payload = 40_000  # small messages: ranges split within partitions
    pub = st.publish_pending(link, chunk=7_000)
    assert pub.rows == sum(1 for _ in city_records) and pub.ranges > 3
    assert pub.messages > pub.ranges * 3  # a message per partition and range, and more where one is too big
    report = st.consume(link, fetch=8)
    assert report.early == 0 and report.repeats == 0 and report.messages == pub.messages
    assert report.rows == pub.rows
    assert _alerts() == expected
    # every partition's detectors have read to the end of every kind; nothing is left on the stream
    for c in DetectorCursor.objects.filter(key__contains="@"):
        kind = next(d.kind for d in st.enabled_detectors() if c.key.startswith(d.key + "@"))
        assert c.last_id == DetectorCursor.objects.get(key=st.publish_key(kind)).last_id
    assert st.consume(link).messages == 0
    # records stored later go out and are analysed the same way
    assert st.publish_pending(link).rows == 0


def test_a_consumer_killed_before_acknowledging_changes_nothing_on_redelivery(make_link: Any,
                                                                           city_records: list[str]) -> None:
    _ingest_in_parts(city_records, 2)
    link = make_link(partitions=2, ack_wait_s=1.0)
    pub = st.publish_pending(link, chunk=20_000)
    link.ack = lambda msgs: None  # type: ignore[method-assign]  # committed, then "killed" before the acks
    first = st.consume(link)
    assert first.messages == pub.messages and first.rows == pub.rows
    before = sorted(Alert.objects.values_list("detector", "device__device_id", "occurrences", "severity"))
    cursors = dict(DetectorCursor.objects.values_list("key", "last_id"))
    link.close()

    again = make_link(partitions=2, ack_wait_s=1.0)  # a new worker: the server delivers the messages again
    import time

    time.sleep(1.5)
    second = st.consume(again, wait_s=1.0)
    assert second.messages == pub.messages and second.repeats == pub.messages and second.rows == 0
    assert sorted(Alert.objects.values_list("detector", "device__device_id", "occurrences", "severity")) == before
    assert dict(DetectorCursor.objects.values_list("key", "last_id")) == cursors
    assert st.consume(again).messages == 0  # acknowledged this time


def test_a_publisher_crash_republishes_and_nothing_is_counted_twice(make_link: Any, city_records: list[str]) -> None:
    _ingest_in_parts(city_records, 2)
    link = make_link(partitions=2)
    pub = st.publish_pending(link, chunk=1_000)
    stored = link._call(link.js.stream_info(link.stream)).state.messages
    assert stored == pub.messages
    # the cursor's commit was lost: the same ranges again -- the server drops them by Nats-Msg-Id
    DetectorCursor.objects.filter(key__startswith="stream.publish:").update(last_id=0)
    assert st.publish_pending(link, chunk=1_000).messages == pub.messages
    assert link._call(link.js.stream_info(link.stream)).state.messages == stored
    st.consume(link)
    alerts = sorted(Alert.objects.values_list("detector", "device__device_id", "occurrences"))
    # lost again, and republished in other ranges (not dropped by the server): the consumers skip them
    DetectorCursor.objects.filter(key__startswith="stream.publish:").update(last_id=0)
    again = st.publish_pending(link, chunk=1_500)
    after = link._call(link.js.stream_info(link.stream)).state.messages
    assert stored < after <= stored + again.messages  # (a range ending where an earlier one ended is dropped)
    report = st.consume(link)
    assert report.messages == report.repeats == after - stored and report.rows == 0
    assert sorted(Alert.objects.values_list("detector", "device__device_id", "occurrences")) == alerts


def test_a_message_ahead_of_its_partition_waits(make_link: Any, city_records: list[str]) -> None:
    ingest_lines([x.encode() for x in city_records[:2000]], source="t")
    link = make_link(partitions=1, ack_wait_s=30.0)
    pub = st.publish_pending(link)
    st.consume(link)
    cursors = dict(DetectorCursor.objects.values_list("key", "last_id"))
    top = max(cursors[st.publish_key(k)] for k in ("scale.txn",))
    import numpy as np

    empty = encode_batch({"id": np.zeros(0, dtype=np.int64), "device": np.zeros(0, dtype=np.int64),
                          "ts": np.zeros(0)})
    ahead = {"Jiliang-Kind": "scale.txn", "Jiliang-Low": str(top + 100), "Jiliang-Top": str(top + 200)}
    link.publish([(link.subject(0, "scale.txn"), empty, ahead)])
    report = st.consume(link, max_rounds=1)
    assert report.early == 1 and report.messages == 0
    assert dict(DetectorCursor.objects.values_list("key", "last_id")) == cursors
    assert pub.messages > 0
    import time

    time.sleep(0.6)  # handed back with a 0.5 s delay: delivered again, handed back again
    assert st.consume(link, max_rounds=1).early == 1
    assert st.stream_status(link).partitions[0].state == "waiting"
    # the missing range arrives: both are taken, in order
    gap = {"Jiliang-Kind": "scale.txn", "Jiliang-Low": str(top), "Jiliang-Top": str(top + 100)}
    link.publish([(link.subject(0, "scale.txn"), empty, gap)])
    report = st.consume(link, wait_s=1.0)
    assert report.early == 0 and report.messages == 2
    assert DetectorCursor.objects.get(key="scale.amount_mismatch@0").last_id == top + 200


def test_a_worker_with_another_partition_count_is_refused(make_link: Any) -> None:
    make_link(partitions=4)
    with pytest.raises(st.StreamError, match="partitions") as err:
        make_link(partitions=2)
    assert err.value.code == "stream_mismatch"


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(st.StreamError, match=r"cannot reach NATS at nats://127\.0\.0\.1:1") as err:
        st.JetStreamLink("nats://127.0.0.1:1", timeout_s=1.0)
    assert err.value.code == "stream_unavailable"


def test_the_loop_thread_is_not_left_running(make_link: Any) -> None:
    link = make_link(partitions=1)
    link.close()
    assert not link._thread.is_alive()


def test_status_shows_each_partitions_lag_and_a_range_the_stream_no_longer_holds(
        make_link: Any, city_records: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json

    from jiliang import cli

    ingest_lines([x.encode() for x in city_records[:3000]], source="t")
    link = make_link(partitions=2)
    pub = st.publish_pending(link, chunk=500)
    status = st.stream_status(link)
    assert status.messages == pub.messages and status.oldest is not None
    assert "scale.txn" in status.published and set(status.published) <= set(st.SOURCES)
    assert all(v == DetectorCursor.objects.get(key=st.publish_key(k)).last_id for k, v in status.published.items())
    assert [p.state for p in status.partitions] == ["new", "new"]  # nobody consumed yet
    assert all(p.pending is None and max(p.behind.values()) > 0 for p in status.partitions)
    st.consume(link, partitions=[0])
    st.consume(link, partitions=[1], fetch=1, max_rounds=1)  # one message of partition 1 analysed
    status = st.stream_status(link)
    p0, p1 = status.partitions
    assert p0.state == "idle" and p0.pending == 0 and not any(p0.behind.values())
    assert p1.state == "working" and p1.pending and p1.ack_pending == 0 and max(p1.behind.values()) > 0
    # the stream loses what partition 1 has not analysed (as past its retention): a gap, not a wait
    link._call(link.js.purge_stream(link.stream))
    assert st.stream_status(link).partitions[1].state == "gap"

    args = argparse.Namespace(stream=URL, stream_name=link.stream, partitions=2, format="json")
    assert cli.cmd_stream_status(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["messages"] == 0 and [p["state"] for p in data["partitions"]] == ["idle", "gap"]
    args.format = "table"
    assert cli.cmd_stream_status(args) == 0
    table = capsys.readouterr().out
    assert f"stream {link.stream}: 0 messages" in table and "\n1\tgap\t0\t0\t" in table
    # a stream that is not there is an error, and is not created
    args.stream_name = link.stream + "_NONE"
    assert cli.cmd_stream_status(args) == 2
    assert "there is no stream" in capsys.readouterr().err
