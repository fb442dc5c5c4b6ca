"""The MQTT side of ``jiliang worker``: devices publish telemetry to ``jiliang/v1/<kind>/<device>``.

A message's payload is one record or an NDJSON batch (SPEC 3.2).  The subscription is QoS 1 on a
persistent session (``clean_session=False`` with a stable client id) with manual acknowledgement:
messages are collected into a batch, the batch is stored with :func:`jiliang.monitoring.ingest.ingest_lines`
(one commit, rejected lines to the quarantine), and only then is each message acknowledged (PUBACK).  If
the worker dies before acknowledging, the broker delivers the messages again to the same session, and the
(``device``, ``seq``) key makes the repeat a no-op — nothing acknowledged is lost, nothing is duplicated.
Device authentication is the broker's job (per-device credentials and topic ACLs in a deployment).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jiliang.monitoring.ingest import IngestReport, ingest_lines, registry_snapshot

log = logging.getLogger("jiliang.worker")


@dataclass
class WorkerStats:
    messages: int = 0
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    detect_runs: int = 0
    last_report: IngestReport | None = field(default=None, repr=False)


class MqttIngestor:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 1883, topic: str = "jiliang/v1/#",
                 client_id: str = "jiliang-worker", batch_size: int = 5000, max_wait_s: float = 0.5,
                 on_batch: Callable[[IngestReport], None] | None = None) -> None:
        self.topic, self.batch_size, self.max_wait_s, self.on_batch = topic, batch_size, max_wait_s, on_batch
        self.stats = WorkerStats()
        self._pending: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._pending.append(msg)

    def _take(self) -> list[mqtt.MQTTMessage]:
        with self._lock:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        return batch

    def process(self, messages: list[mqtt.MQTTMessage], snapshot: Any) -> None:
        lines: list[bytes] = []
        for m in messages:
            lines.extend(bytes(line) for line in m.payload.splitlines() if line.strip())
        report = ingest_lines(lines, source="mqtt", snapshot=snapshot)  # commits before we acknowledge
        for m in messages:
            self.client.ack(m.mid, m.qos)
        s = self.stats
        s.messages += len(messages)
        s.batches += 1
        s.accepted += report.accepted
        s.duplicates += report.duplicates
        s.rejected += report.rejected
        s.last_report = report
        if self.on_batch is not None:
            self.on_batch(report)

    def run(self, stop: threading.Event, *, every: Callable[[], None] | None = None, every_s: float = 60.0,
            refresh_registry_s: float = 300.0, on_ready: Callable[[], None] | None = None) -> WorkerStats:
        """Consume until ``stop`` is set; call ``every`` (the detectors) every ``every_s`` seconds."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        snapshot = registry_snapshot()
        snap_at = last_every = time.monotonic()
        try:
            if not self._subscribed.wait(10):
                raise OSError("no subscription acknowledgement from the broker within 10 s")
            if on_ready is not None:
                on_ready()
            while not stop.is_set():
                now = time.monotonic()
                if now - snap_at > refresh_registry_s:
                    snapshot, snap_at = registry_snapshot(), now
                batch = self._take()
                if batch:
                    self.process(batch, snapshot)
                else:
                    stop.wait(self.max_wait_s)
                if every is not None and time.monotonic() - last_every >= every_s:
                    every()
                    self.stats.detect_runs += 1
                    last_every = time.monotonic()
            rest = self._take()  # drain what has arrived before stopping
            while rest:
                self.process(rest, snapshot)
                rest = self._take()
        finally:
            self.client.loop_stop()
            self.client.disconnect()
        return self.stats

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()
