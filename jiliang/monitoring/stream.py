"""NATS JetStream between ingestion and the detector workers (数据流分发, ADR 0003, SPEC §4).

The embedded default runs the detectors over the database by high-water marks (:mod:`.detection`).  A
deployment that must spread detection over several machines starts its workers with ``jiliang worker
--stream nats://…``; then:

* **Publisher** (:func:`publish_pending`): what ingest has *committed* is read from the database past the
  publisher's own cursor -- the database is the outbox, so a record acknowledged to its sender is never
  missing from the stream -- split by partition (the record's place, :func:`jiliang.engine.streams.partition_of`)
  and published to ``<prefix>.<partition>.<kind>`` as Arrow IPC messages of at most the server's payload
  limit, each naming the id range (``low``, ``top``] it covers.  Every partition gets a message for every
  range, empty ones too, so a partition's ranges follow each other without a gap.  The cursor moves only
  after the server has acknowledged every message (stored in the stream); a crash before that publishes
  the range again, and ``Nats-Msg-Id`` (kind, range, partition) lets the server drop the repeat.
* **Consumers** (:func:`consume`): one durable pull consumer per partition.  Each partition's detectors
  keep their own cursor and per-device state (``DetectorCursor`` ``<detector>@<partition>``).  Fetched
  messages are taken in range order: a message whose range starts above the partition's cursor arrived too
  early (an earlier one is still with another worker or being redelivered) and is handed back (``nak``);
  one at or below is a repeat and only its new rows count.  Alerts, cursors and states are committed in one
  transaction, and only then are the messages acknowledged: a worker killed in between gets them
  redelivered and the cursors make the repeat a no-op.  Any number of workers may consume any partitions.

Partitioning by place keeps a residential compound's meters in one partition, so a detector comparing a
meter with its neighbours sees them all.  The stream's description records the partition count; a worker
started with another count is refused (the per-partition states would no longer match).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from django.db import transaction

from jiliang.core.errors import JiliangError
from jiliang.engine.detectors import Detector
from jiliang.engine.detectors.base import groups
from jiliang.engine.streams import decode_batch, encode_batch, id_parts, partition_of
from jiliang.monitoring import detection as det_mod
from jiliang.monitoring.detection import SOURCES, DetectorReport, detect_range, enabled_detectors
from jiliang.monitoring.models import DetectorCursor

log = logging.getLogger("jiliang.stream")
T = TypeVar("T")

STREAM = "JILIANG_TELEMETRY"
PREFIX = "jiliang.telemetry"
PARTITIONS = 8
PUBLISH_CHUNK = 500_000        # ids read from the database per publishing step
MAX_AGE_S = 7 * 86400.0        # how long the stream keeps a message: longer than any outage of the consumers
ACK_WAIT_S = 120.0             # a message not acknowledged within this is delivered again
FETCH = 32                     # messages fetched (and analysed together) per partition at a time
PAYLOAD_SHARE = 0.8            # of the server's largest payload, for one message's columns before compression


class StreamError(JiliangError):
    pass


def stream_prefix(stream: str) -> str:
    """The subjects' prefix of a stream: ``jiliang.telemetry`` for the default stream, ``jiliang.<name>``
    (lower case) for another (a second deployment, a test)."""
    if stream == STREAM:
        return PREFIX
    if not stream.replace("_", "").replace("-", "").isalnum():
        raise StreamError(f"stream name {stream!r}: letters, digits, - and _ only", code="validation_failed")
    return f"jiliang.{stream.lower()}"


def publish_key(kind: str) -> str:
    """The publisher's cursor for a kind (how far its records are on the stream)."""
    return f"stream.publish:{kind}"


def partition_key(detector: str, partition: int) -> str:
    """A detector's cursor and state for one partition."""
    return f"{detector}@{partition}"


class JetStreamLink:
    """A synchronous handle on NATS JetStream for the worker (nats-py is asyncio): the client lives on its
    own event loop in a thread; every call waits for its result.  Creates the stream when it is missing
    (unless ``create`` is false: then a missing stream is an error) and refuses one made for another
    partition count."""

    def __init__(self, url: str, *, stream: str = STREAM, prefix: str = PREFIX, partitions: int = PARTITIONS,
                 ack_wait_s: float = ACK_WAIT_S, max_age_s: float = MAX_AGE_S, timeout_s: float = 10.0,
                 create: bool = True) -> None:
        if partitions < 1:
            raise StreamError("the stream needs at least one partition")
        self.url, self.stream, self.prefix, self.partitions = url, stream, prefix, partitions
        self.ack_wait_s, self.max_age_s, self.timeout_s = ack_wait_s, max_age_s, timeout_s
        self.create = create
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="jiliang-nats", daemon=True)
        self._thread.start()
        self._subs: dict[int, Any] = {}
        try:
            import nats

            self.nc = self._call(nats.connect(url, connect_timeout=timeout_s, max_reconnect_attempts=5,
                                              reconnect_time_wait=1, name="jiliang-worker"))
        except Exception as exc:
            self._stop_loop()
            raise StreamError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}",
                              code="stream_unavailable") from exc
        self.js = self.nc.jetstream(timeout=timeout_s)
        try:
            self._call(self._ensure_stream())
        except Exception:
            self.close()
            raise
        self.max_payload = int(self.nc.max_payload)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    @property
    def description(self) -> str:
        return f"jiliang telemetry by place, partitions={self.partitions}"

    async def _ensure_stream(self) -> None:
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        try:
            info = await self.js.stream_info(self.stream)
        except NotFoundError:
            if not self.create:
                raise StreamError(f"there is no stream {self.stream} on {self.url}", code="not_found") from None
            await self.js.add_stream(StreamConfig(
                name=self.stream, subjects=[f"{self.prefix}.>"], description=self.description,
                retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, max_age=self.max_age_s,
                duplicate_window=120.0))
            return
        if info.config.description != self.description:
            raise StreamError(f"the stream {self.stream} was made for another partitioning "
                              f"({info.config.description!r}); this worker was started with {self.partitions} "
                              "partitions", code="stream_mismatch")

    def subject(self, partition: int, kind: str) -> str:
        return f"{self.prefix}.{partition}.{kind}"

    def publish(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
        """Publish the messages and wait until the server has stored every one."""
        async def send() -> None:
            for part in range(0, len(messages), 256):
                await asyncio.gather(*(self.js.publish(s, data, headers=h, stream=self.stream)
                                       for s, data, h in messages[part:part + 256]))

        self._call(send())

    async def _sub(self, partition: int) -> Any:
        sub = self._subs.get(partition)
        if sub is None:
            from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

            config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                    ack_wait=self.ack_wait_s, max_ack_pending=FETCH * 4, max_deliver=-1)
            sub = await self.js.pull_subscribe(f"{self.prefix}.{partition}.>", durable=f"detect-{partition}",
                                               stream=self.stream, config=config)
            self._subs[partition] = sub
        return sub

    def fetch(self, partition: int, batch: int = FETCH, wait_s: float = 0.2) -> list[Any]:
        """Up to ``batch`` messages of the partition (none after ``wait_s`` without one)."""
        import nats.errors

        async def go() -> list[Any]:
            sub = await self._sub(partition)
            info = await sub.consumer_info()
            if not info.num_pending and not info.num_ack_pending:  # nothing to deliver nor to redeliver:
                return []                                          # no need to wait out the fetch
            try:
                msgs: list[Any] = await sub.fetch(batch, timeout=wait_s)
            except (TimeoutError, nats.errors.TimeoutError):  # nothing within wait_s (either type)
                return []
            return msgs

        return self._call(go())

    def ack(self, msgs: list[Any]) -> None:
        async def go() -> None:
            await asyncio.gather(*(m.ack_sync(timeout=self.timeout_s) for m in msgs))

        if msgs:
            self._call(go())

    def nak(self, msgs: list[Any], delay_s: float = 0.5) -> None:
        async def go() -> None:
            await asyncio.gather(*(m.nak(delay=delay_s) for m in msgs))

        if msgs:
            self._call(go())

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._call(self.nc.close())  # unacknowledged messages are delivered again, to any worker
            except Exception:  # closing a broken connection: nothing more to do
                log.debug("closing the NATS connection failed", exc_info=True)
            self._stop_loop()


# --- publishing --------------------------------------------------------------------------------------------

@dataclass
class PublishReport:
    messages: int = 0
    rows: int = 0
    ranges: int = 0


def _start_position(kind: str) -> int:
    """Where a kind's publishing starts: where the database detectors of the kind had all read to (a
    deployment moving from ``jiliang detect`` to the stream analyses nothing twice), else the beginning."""
    keys = [d.key for d in enabled_detectors() if d.kind == kind]
    lasts = list(DetectorCursor.objects.filter(key__in=keys).values_list("last_id", flat=True))
    return min(lasts) if keys and len(lasts) == len(keys) else 0


def _row_bytes(cols: dict[str, npt.NDArray[Any]]) -> float:
    n = max(int(cols["id"].size), 1)
    size = 0.0
    for v in cols.values():
        size += (sum(len(x) for x in v.tolist()) / n + 8) if v.dtype == object else v.dtype.itemsize
    return size


def _messages(link: JetStreamLink, kind: str, batch: dict[str, npt.NDArray[Any]] | None, low: int, top: int
              ) -> tuple[list[tuple[str, bytes, dict[str, str]]], int]:
    """The messages of the range (``low``, ``top``]: every partition's rows, split to fit the payload limit,
    and an empty message for a partition without any."""
    out: list[tuple[str, bytes, dict[str, str]]] = []
    names = ["id", "device", "ts", *(c for c in SOURCES[kind][1] if c not in ("id", "device_id", SOURCES[kind][2]))]
    if batch is None or not batch["id"].size:  # no rows: an empty message per partition keeps the ranges whole
        return [(link.subject(p, kind), b"", {"Nats-Msg-Id": f"{kind}:{low}:{top}:{p}", "Jiliang-Kind": kind,
                 "Jiliang-Low": str(low), "Jiliang-Top": str(top)}) for p in range(link.partitions)], 0
    devices = groups(np.asarray(batch["device"], dtype=np.int64))[0]
    part = partition_of(det_mod._per_row(batch, det_mod.load_extras()["place_of"], -devices), link.partitions)
    max_rows = max(1, int(PAYLOAD_SHARE * link.max_payload / _row_bytes(batch)))
    for p in range(link.partitions):
        rows = np.flatnonzero(part == p)
        for lo, hi, idx in id_parts(batch["id"][rows], low, top, max_rows):
            sel = rows[idx]
            payload = encode_batch({c: batch[c][sel] for c in names}) if sel.size else b""
            headers = {"Nats-Msg-Id": f"{kind}:{lo}:{hi}:{p}", "Jiliang-Kind": kind, "Jiliang-Low": str(lo),
                       "Jiliang-Top": str(hi)}
            out.append((link.subject(p, kind), payload, headers))
    return out, int(batch["id"].size)


def publish_pending(link: JetStreamLink, *, chunk: int = PUBLISH_CHUNK, kinds: Iterable[str] | None = None
                    ) -> PublishReport:
    """Publish every committed record past the publisher's cursors, kind by kind and chunk by chunk up to
    the largest id when the call starts.  Each chunk's cursor moves (and its column segments are released)
    only after the server has stored every message of the chunk."""
    report = PublishReport()
    det_mod.load_extras()
    for kind in (list(SOURCES) if kinds is None else list(kinds)):
        end: int | None = None
        while True:
            with transaction.atomic():
                cursor, created = DetectorCursor.objects.select_for_update().defer("state").get_or_create(
                    key=publish_key(kind), defaults={"last_id": _start_position(kind)})
                if created:  # the partitions' detectors start where publishing starts
                    for d in enabled_detectors():
                        if d.kind == kind:
                            for p in range(link.partitions):
                                DetectorCursor.objects.get_or_create(key=partition_key(d.key, p),
                                                                     defaults={"last_id": cursor.last_id})
                low = cursor.last_id
                first, largest = det_mod._id_bounds(kind, low)
                end = largest if end is None else end
                if not first or first > end:
                    break
                skip_to = max(low, first - 1)  # a gap in the ids: read from past it, publish the whole range
                top = min(skip_to + chunk, end)
                batch = (det_mod._read_segments(kind, skip_to, top) if det_mod._covered(kind, skip_to)
                         else det_mod._read_chunk(kind, skip_to, top))
                messages, rows = _messages(link, kind, batch, low, top)
                link.publish(messages)
                cursor.last_id = top
                cursor.save(update_fields=["last_id", "updated_at"])
                det_mod._consume_segments(kind, [publish_key(kind)])
            report.messages += len(messages)
            report.rows += rows
            report.ranges += 1
    return report


# --- consuming ---------------------------------------------------------------------------------------------

@dataclass
class ConsumeReport:
    messages: int = 0
    repeats: int = 0      # messages whose whole range had been analysed already
    early: int = 0        # handed back: an earlier range of their partition was not analysed yet
    rows: int = 0
    detectors: dict[str, DetectorReport] = field(default_factory=dict)

    @property
    def opened(self) -> int:
        return sum(d.opened for d in self.detectors.values())


def _header(msg: Any, name: str) -> str:
    value = (msg.headers or {}).get(name)
    if value is None:
        raise StreamError(f"stream message {msg.subject} has no {name} header", code="validation_failed")
    return str(value)


def _analyse(partition: int, kind: str, dets: list[Detector], msgs: list[Any], report: ConsumeReport
             ) -> tuple[list[Any], list[Any]]:
    """Analyse one kind's fetched messages of a partition in range order, in one transaction: (taken,
    handed back)."""
    order = sorted(msgs, key=lambda m: (int(_header(m, "Jiliang-Low")), int(_header(m, "Jiliang-Top"))))
    first_low = int(_header(order[0], "Jiliang-Low"))
    with transaction.atomic():
        cursors: dict[str, DetectorCursor] = {}
        for d in dets:  # a detector enabled after publishing began starts at the first message it sees
            cursors[d.key], _ = DetectorCursor.objects.select_for_update().defer("state").get_or_create(
                key=partition_key(d.key, partition), defaults={"last_id": first_low})
        if not cursors:
            return order, []
        low = min(c.last_id for c in cursors.values())
        reach = low
        taken: list[Any] = []
        parts: list[dict[str, npt.NDArray[Any]]] = []
        for i, m in enumerate(order):
            m_low, m_top = int(_header(m, "Jiliang-Low")), int(_header(m, "Jiliang-Top"))
            if m_low > reach:
                report.early += len(order) - i
                return _finish(partition, kind, dets, cursors, parts, low, reach, report, taken, order[i:])
            taken.append(m)
            if m_top <= low:
                report.repeats += 1
            elif m.data:
                cols = decode_batch(m.data)
                if cols["id"].size:
                    parts.append(cols)
            reach = max(reach, m_top)
        return _finish(partition, kind, dets, cursors, parts, low, reach, report, taken, [])


def _finish(partition: int, kind: str, dets: list[Detector], cursors: dict[str, DetectorCursor],
            parts: list[dict[str, npt.NDArray[Any]]], low: int, reach: int, report: ConsumeReport,
            taken: list[Any], later: list[Any]) -> tuple[list[Any], list[Any]]:
    batch = None
    if parts:
        merged = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        batch = det_mod._sort(kind, det_mod._in_id_order(merged))
    if reach > low:
        for d in dets:
            rep = report.detectors.setdefault(d.key, DetectorReport(d.key))
            detect_range(d, cursors[d.key], batch, low, reach, rep)
        if batch is not None:
            report.rows += int((batch["id"] > low).sum())
    report.messages += len(taken)
    return taken, later


def consume(link: JetStreamLink, *, partitions: Iterable[int] | None = None, fetch: int = FETCH,
            wait_s: float = 0.2, max_rounds: int | None = None) -> ConsumeReport:
    """Analyse what the stream holds for the partitions (default: all) until none has anything left (or
    ``max_rounds`` fetches per partition): per partition and kind, the fetched messages' alerts, cursors and
    states in one transaction, then the acknowledgements."""
    report = ConsumeReport()
    by_kind: dict[str, list[Detector]] = {}
    for d in enabled_detectors():
        by_kind.setdefault(d.kind, []).append(d)
    det_mod.load_extras()
    det_mod._REGISTRY_CACHE["pinned"] = True
    try:
        for p in (range(link.partitions) if partitions is None else partitions):
            if not 0 <= p < link.partitions:
                raise StreamError(f"partition {p} is not one of the stream's 0…{link.partitions - 1}")
            rounds = 0
            while max_rounds is None or rounds < max_rounds:
                rounds += 1
                msgs = link.fetch(p, fetch, wait_s)
                if not msgs:
                    break
                kinds: dict[str, list[Any]] = {}
                for m in msgs:
                    kinds.setdefault(_header(m, "Jiliang-Kind"), []).append(m)
                done: list[Any] = []
                back: list[Any] = []
                for kind, some in kinds.items():
                    if kind not in SOURCES:
                        raise StreamError(f"stream message {some[0].subject}: unknown kind {kind!r}")
                    taken, later = _analyse(p, kind, by_kind.get(kind, []), some, report)
                    done += taken
                    back += later
                link.ack(done)  # only after the transaction has committed
                if back:
                    for m in back:
                        if m.metadata.num_delivered >= 20 and m.metadata.num_delivered % 20 == 0:
                            log.warning("partition %s: %s range from %s waits for an earlier range "
                                        "(delivered %s times; does the stream still hold it?)", p,
                                        _header(m, "Jiliang-Kind"), _header(m, "Jiliang-Low"),
                                        m.metadata.num_delivered)
                    link.nak(back)
                    break  # the earlier range is elsewhere: come back to this partition later
    finally:
        det_mod._REGISTRY_CACHE["pinned"] = False
    return report


# --- status ------------------------------------------------------------------------------------------------

@dataclass
class PartitionStatus:
    """One partition's consumer and how far its detectors are behind the publisher, per kind (in record
    ids).  ``state``: ``idle`` (nothing behind, nothing to deliver), ``working`` (messages to deliver or
    being analysed), ``waiting`` (a message was handed back ``redelivered`` times: it waits for an earlier
    range — stuck if that range is gone), ``gap`` (behind, yet the stream has nothing left to deliver: the range is no
    longer in the stream — kept longer than its retention, or deleted — and is skipped only by moving the
    partition's cursors to the publisher's), ``new`` (no consumer yet)."""

    partition: int
    pending: int | None        # messages not delivered yet (None: the consumer does not exist yet)
    ack_pending: int | None    # delivered, not acknowledged yet
    redelivered: int | None
    behind: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.pending is None:
            return "new" if any(self.behind.values()) else "idle"
        if self.pending == 0 and self.ack_pending == 0:
            return "gap" if any(self.behind.values()) else "idle"
        return "waiting" if self.redelivered else "working"


@dataclass
class StreamStatus:
    stream: str
    messages: int
    bytes: int
    oldest: str | None                 # time of the oldest message the stream still holds (RFC 3339)
    published: dict[str, int]          # kind -> the publisher's cursor (largest id published)
    partitions: list[PartitionStatus]


def stream_status(link: JetStreamLink) -> StreamStatus:
    """The stream's size and every partition's consumer and lag, for ``jiliang stream status``: read-only
    (it creates no consumer and moves no cursor)."""
    from nats.js.errors import NotFoundError

    info = link._call(link.js.stream_info(link.stream))
    tops = dict(DetectorCursor.objects.filter(key__in=[publish_key(k) for k in SOURCES]).values_list("key", "last_id"))
    published = {kind: tops[publish_key(kind)] for kind in SOURCES if publish_key(kind) in tops}
    cursors = dict(DetectorCursor.objects.filter(key__contains="@").values_list("key", "last_id"))
    dets = enabled_detectors()
    out: list[PartitionStatus] = []
    for p in range(link.partitions):
        try:
            ci = link._call(link.js.consumer_info(link.stream, f"detect-{p}"))
            st = PartitionStatus(p, int(ci.num_pending or 0), int(ci.num_ack_pending or 0),
                                 int(ci.num_redelivered or 0))
        except NotFoundError:
            st = PartitionStatus(p, None, None, None)
        for kind, top in sorted(published.items()):
            reads = [cursors.get(partition_key(d.key, p), 0) for d in dets if d.kind == kind]
            st.behind[kind] = max(0, top - min(reads)) if reads else 0
        out.append(st)
    oldest = None
    if info.state.messages:
        try:
            oldest = link._call(link.js.get_msg(link.stream, seq=info.state.first_seq)).time
        except NotFoundError:  # expired between the two calls
            oldest = None
    return StreamStatus(link.stream, int(info.state.messages), int(info.state.bytes),
                        None if oldest is None else str(oldest), published, out)
