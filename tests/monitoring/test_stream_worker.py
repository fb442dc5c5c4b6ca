"""``jiliang worker --stream`` as real processes against the machine's NATS: a detector worker killed
(SIGKILL) mid-stream, then two workers sharing every partition, end with exactly the alerts the database
path gave for the same records, each once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("nats")
pytestmark = pytest.mark.nats
URL = "nats://127.0.0.1:4222"


def _env(db: Path) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "JILIANG_HOME": str(db.parent)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture
def stream_name() -> Iterator[str]:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=2).close()
    except OSError:
        if os.environ.get("JILIANG_REQUIRE_SERVICES") == "1":
            pytest.fail("NATS is not running on 127.0.0.1:4222")
        pytest.skip("NATS is not running on 127.0.0.1:4222")
    name = f"JTW_{uuid.uuid4().hex[:10]}"
    yield name
    import asyncio

    import nats

    async def delete() -> None:
        from nats.js.errors import NotFoundError

        nc = await nats.connect(URL)
        try:
            await nc.jetstream().delete_stream(name)
        except NotFoundError:  # the test failed before a worker made it
            pass
        finally:
            await nc.close()

    asyncio.run(delete())


def _worker(db: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-u", "-m", "jiliang.cli", "worker", "--stream", URL,
                             "--stream-name", name, "--partitions", "4", "--no-mqtt", "--detect-every", "0.2"],
                            env=_env(db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _q(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=30) as con:
        return con.execute(sql).fetchall()


def _done(db: Path) -> bool:
    """Every kind published to its table's last id, and every partition's detectors read to there."""
    tables = {"scale.txn": "monitoring_scaletxn", "scale.event": "monitoring_scaleevent",
              "scale.recheck": "monitoring_scalerecheck", "meter.reading": "monitoring_meterreading",
              "charger.session": "monitoring_chargersession"}
    cursors = dict(_q(db, "SELECT key, last_id FROM monitoring_detectorcursor"))
    for kind, table in tables.items():
        top = _q(db, f'SELECT coalesce(max(id), 0) FROM "{table}"')[0][0]  # noqa: S608
        if cursors.get(f"stream.publish:{kind}", -1) != top:
            return False
    parts = [str(k) for k in cursors if "@" in str(k)]
    return bool(parts) and all(cursors[k] == cursors[f"stream.publish:{_kind(k)}"] for k in parts)


def _kind(key: str) -> str:
    det = key.split("@")[0]
    return {"scale.amount_mismatch": "scale.txn", "scale.software_checksum": "scale.event",
            "scale.unauthorized_event": "scale.event", "scale.recheck_shortfall": "scale.recheck",
            "scale.zero_drift": "scale.recheck", "charger.register_continuity": "charger.session",
            "charger.ocmf_signature": "charger.session"}.get(det, "meter.reading")


def test_a_killed_stream_worker_and_two_sharing_ones_give_the_database_paths_alerts(
        tmp_path: Path, stream_name: str) -> None:
    db = tmp_path / "city.sqlite3"
    r = subprocess.run([sys.executable, "-m", "jiliang.cli", "demo", "--scale", "small", "--no-serve"],
                       env=_env(db), capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    from jiliang.engine.detectors import REGISTRY

    keys = sorted(REGISTRY)
    marks = ",".join("?" * len(keys))
    with sqlite3.connect(db) as con:  # the demo's alerts came from the database path over the same records
        expected = set(con.execute(f"SELECT a.detector, i.device_id FROM monitoring_alert a JOIN registry_instrument i "  # noqa: S608
                                   f"ON i.id = a.device_id WHERE a.detector IN ({marks})", keys).fetchall())
        con.execute(f"DELETE FROM monitoring_alert WHERE detector IN ({marks})", keys)  # noqa: S608
        con.execute("DELETE FROM monitoring_detectorcursor")
    assert len(expected) >= 5 and {d for d, _ in expected} >= {"meter.continuous_flow", "scale.recheck_shortfall"}

    first = _worker(db, stream_name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once some partitions have analysed something, not all
        time.sleep(0.05)
        got = _q(db, "SELECT count(*) FROM monitoring_detectorcursor WHERE key LIKE '%@%' AND last_id > 0")[0][0]
        if got:
            break
    first.send_signal(signal.SIGKILL)
    out_first = first.communicate(timeout=30)[0]
    assert first.returncode == -signal.SIGKILL
    assert not _done(db), out_first  # it was killed mid-stream

    workers = [_worker(db, stream_name), _worker(db, stream_name)]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not _done(db):
            time.sleep(0.5)
        assert _done(db), "".join(w.stdout.read() if w.stdout and w.poll() is not None else "" for w in workers)
    finally:
        outs = []
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
            outs.append(w.communicate(timeout=60)[0])
    assert [w.returncode for w in workers] == [0, 0], "\n=====\n".join(outs)
    with sqlite3.connect(db) as con:
        got = con.execute(f"SELECT a.detector, i.device_id FROM monitoring_alert a JOIN registry_instrument i "  # noqa: S608
                          f"ON i.id = a.device_id WHERE a.detector IN ({marks})", keys).fetchall()
    assert len(got) == len(set(got))  # one alert per device and detector
    assert set(got) == expected
    assert all("analysed" in o or "ready" in o for o in outs)
