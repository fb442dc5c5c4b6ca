"""jiliang worker against the machine's real Mosquitto: MQTT in, alerts out; a kill mid-stream loses and
duplicates nothing.  Each test uses its own topic prefix and client ids, and a fresh SQLite database."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

paho = pytest.importorskip("paho.mqtt.client")
pytestmark = pytest.mark.mqtt
BROKER = ("127.0.0.1", 1883)


def _broker_up() -> bool:
    import socket

    try:
        with socket.create_connection(BROKER, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _broker_up():
        if os.environ.get("JILIANG_REQUIRE_SERVICES") == "1":
            pytest.fail("Mosquitto is not running on 127.0.0.1:1883")
        pytest.skip("Mosquitto is not running on 127.0.0.1:1883")
    home = tmp_path_factory.mktemp("mqtt")
    db = home / "city.sqlite3"
    r = subprocess.run([sys.executable, "-m", "jiliang.cli", "demo", "--scale", "small", "--no-serve"],
                       env=_env(db), capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    return db


def _env(db: Path) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "JILIANG_HOME": str(db.parent)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _meter(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return str(con.execute("SELECT device_id FROM registry_instrument WHERE instrument_type_id='water_meter' "
                               "ORDER BY id LIMIT 1").fetchone()[0])


class Worker:
    def __init__(self, db: Path, prefix: str, client_id: str, batch: int = 50) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "jiliang.cli", "worker", "--topic", f"{prefix}/#", "--client-id", client_id,
             "--batch-size", str(batch), "--detect-every", "1"],
            env=_env(db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"worker never printed {text!r}: {''.join(self.lines)}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return "".join(self.lines) + (out or "")


def _publish(prefix: str, device: str, records: list[dict[str, object]], pause_s: float = 0.0) -> None:
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    pub.connect(*BROKER)
    pub.loop_start()
    infos = []
    for r in records:
        infos.append(pub.publish(f"{prefix}/meter.reading/{device}", json.dumps(r), qos=1))
        if pause_s:
            time.sleep(pause_s)
    for info in infos:
        info.wait_for_publish(timeout=30)
    pub.loop_stop()
    pub.disconnect()


def _readings(device: str, seqs: range, reverse: bool = False) -> list[dict[str, object]]:
    out = []
    for s in seqs:
        reg = 5000 - s * 0.5 if reverse else 100 + s * 0.25
        out.append({"kind": "meter.reading", "device": device, "ts": f"2026-11-2{1 + s // 10000}T00:00:00+08:00"
                    .replace("T00:00:00", f"T{(s // 60) % 24:02d}:{s % 60:02d}:00"), "seq": 10**6 + s,
                    "register": round(reg, 3)})
    return out


def _count(db: Path, device: str, seqs: range) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute("SELECT count(*) FROM monitoring_meterreading m JOIN registry_instrument i "
                               "ON i.id = m.device_id WHERE i.device_id = ? AND m.seq BETWEEN ? AND ?",
                               [device, 10**6 + seqs.start, 10**6 + seqs.stop - 1]).fetchone()[0])


def test_published_readings_are_stored_and_raise_an_alert(city_db: Path) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}/jiliang/v1"
    device = _meter(city_db)
    w = Worker(city_db, prefix, f"w-{uuid.uuid4().hex[:8]}")
    try:
        w.wait_for("subscribed")
        _publish(prefix, device, _readings(device, range(6), reverse=True))
        w.wait_for("alerts opened")
    finally:
        out = w.stop()
    assert _count(city_db, device, range(6)) == 6, out
    r = subprocess.run([sys.executable, "-m", "jiliang.cli", "alerts", "--format", "json"], env=_env(city_db),
                       capture_output=True, text=True, timeout=60, check=True)
    alerts = json.loads(r.stdout.strip().splitlines()[-1])
    assert any(a["device"] == device and a["detector"] == "meter.reverse_flow" for a in alerts), out


def test_killing_the_worker_mid_stream_loses_and_duplicates_nothing(city_db: Path) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}/jiliang/v1"
    client = f"w-{uuid.uuid4().hex[:8]}"
    device = _meter(city_db)
    seqs = range(100, 900)
    records = _readings(device, seqs)
    first = Worker(city_db, prefix, client, batch=20)
    first.wait_for("subscribed")
    import threading

    publisher = threading.Thread(target=_publish, args=(prefix, device, records, 0.004))
    publisher.start()                              # a device keeps sending while the worker dies
    first.wait_for("batch stored")
    first.proc.send_signal(signal.SIGKILL)         # no clean shutdown: unacknowledged messages stay with the broker
    first.proc.wait(timeout=30)
    publisher.join(timeout=60)
    stored_at_kill = _count(city_db, device, seqs)
    # the kill came mid-stream: some batches were stored and acknowledged, the rest were not
    assert 20 <= stored_at_kill < len(records), stored_at_kill
    second = Worker(city_db, prefix, client, batch=20)  # same client id: the broker resumes the session
    try:
        second.wait_for("subscribed")
        deadline = time.monotonic() + 90
        while _count(city_db, device, seqs) < len(records) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        out = second.stop()
    assert _count(city_db, device, seqs) == len(records), out  # every record once: none lost, none doubled
    with sqlite3.connect(city_db) as con:
        assert con.execute("SELECT count(*) FROM monitoring_quarantine WHERE source = 'mqtt'").fetchone()[0] == 0
