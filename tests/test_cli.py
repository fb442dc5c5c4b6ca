"""The ``jiliang`` command as a user runs it: a fresh database file, real subprocesses, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.world import make_uscc


def run(args: list[str], db: Path, **kw: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "JILIANG_HOME": str(db.parent), **kw}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "-m", "jiliang.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


@pytest.fixture
def dbfile(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "x.sqlite3"


def test_import_into_a_fresh_database_migrates_it_first(dbfile: Path, tmp_path: Path) -> None:
    orgs = tmp_path / "orgs.csv"
    code = make_uscc("440304", 1)
    orgs.write_text(f"uscc,name,kinds,region_code\n{code},甲公司,market_entity,440304\n", encoding="utf-8")
    r = run(["import", "organizations", str(orgs)], dbfile)
    assert r.returncode == 0, r.stderr
    assert "organizations: 1 imported, 0 rejected" in r.stdout
    assert dbfile.exists()
    again = run(["import", "organizations", str(orgs)], dbfile)
    assert again.returncode == 1
    assert "row 2, field uscc: an organization with this credit code is already registered" in again.stderr


def test_bad_file_exits_non_zero_with_a_one_line_reason(dbfile: Path, tmp_path: Path) -> None:
    r = run(["import", "instruments", str(tmp_path / "missing.csv")], dbfile)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("jiliang: error:") and "no such file" in r.stderr


def test_skip_invalid_saves_rejected_rows(dbfile: Path, tmp_path: Path) -> None:
    orgs = tmp_path / "orgs.csv"
    orgs.write_text("uscc,name,kinds,region_code\n"
                    f"{make_uscc('440304', 1)},甲,market_entity,440304\n"
                    f"{make_uscc('440304', 2)[:17]}I,乙,market_entity,440304\n", encoding="utf-8")
    r = run(["import", "organizations", str(orgs), "--skip-invalid"], dbfile)
    assert r.returncode == 0, r.stderr
    assert "1 imported, 1 rejected" in r.stdout
    rejected = (tmp_path / "orgs.rejected.csv").read_text(encoding="utf-8")
    assert "uscc:" in rejected and "乙" in rejected


def test_usage_errors_and_help(dbfile: Path) -> None:
    assert run(["import", "gadgets", "x.csv"], dbfile).returncode == 2
    h = run(["import", "--help"], dbfile)
    assert h.returncode == 0 and "--skip-invalid" in h.stdout
    assert run([], dbfile).returncode == 2


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    r = run(["import", "organizations", "x.csv"], tmp_path / "x.sqlite3", DATABASE_URL="mysql://nope")
    assert r.returncode != 0 and "DATABASE_URL" in r.stderr


def test_evaluate_reads_stdin_and_prints_the_contract(dbfile: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{dbfile}"}
    req = ('{"instrument_type": "scale", "accuracy_class": "III", "params": {"e_g": 5, "max_g": 15000},'
           ' "points": [{"load_g": 10000, "error_g": 5.5}]}')
    r = subprocess.run([sys.executable, "-m", "jiliang.cli", "evaluate", "-"], input=req, capture_output=True,
                       text=True, env=env, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout) == {"conforming": False, "points": [
        {"point": "10000 g", "mpe": 5.0, "verdict": "fail", "margin": -0.5}]}
    assert not dbfile.exists(), "evaluate needs no database"
    bad = subprocess.run([sys.executable, "-m", "jiliang.cli", "evaluate", "-"], input='{"instrument_type": "x"}',
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "instrument_type" in bad.stderr


def test_sampling_plan_command(dbfile: Path) -> None:
    import json

    r = run(["sampling-plan", "--lot-size", "500", "--aql", "2.5"], dbfile)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"code_letter": "H", "plan_letter": "H", "n": 50, "ac": 3, "re": 4,
                                    "inspect_all": False}
    assert run(["sampling-plan", "--lot-size", "500", "--aql", "3"], dbfile).returncode == 2


def test_serve_answers_http(dbfile: Path) -> None:
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{dbfile}", "JILIANG_HOME": str(dbfile.parent)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen([sys.executable, "-m", "jiliang.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=2) as resp:
                    body = resp.read().decode()
                    csp = resp.headers.get("Content-Security-Policy", "")
                break
            except OSError:
                time.sleep(0.2)
        assert '"openapi"' in body
        assert "default-src 'self'" in csp
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_token_create_list_revoke(dbfile: Path, tmp_path: Path) -> None:
    orgs = tmp_path / "orgs.csv"
    code = make_uscc("440305", 7)
    orgs.write_text(f"uscc,name,kinds,region_code\n{code},水务集团,utility,440305\n", encoding="utf-8")
    assert run(["import", "organizations", str(orgs)], dbfile).returncode == 0
    made = run(["token", "create", "--org", code, "--role", "utility", "--name", "AMI"], dbfile)
    assert made.returncode == 0, made.stderr
    raw = made.stdout.strip().splitlines()[-1]
    assert raw.startswith("jl_")
    listed = run(["token", "list"], dbfile)
    assert raw not in listed.stdout and raw[:10] in listed.stdout and "active" in listed.stdout
    token_id = listed.stdout.split("\t")[0]
    assert run(["token", "revoke", token_id], dbfile).returncode == 0
    assert "revoked" in run(["token", "list", "--org", code], dbfile).stdout
    assert run(["token", "create", "--org", make_uscc("440305", 8), "--role", "utility", "--name", "x"],
               dbfile).returncode == 2


def test_reminders_send_reports_counts_and_refuses_a_bad_date(dbfile: Path) -> None:
    empty = run(["reminders", "send", "--as-of", "2026-11-23"], dbfile)
    assert empty.returncode == 0, empty.stderr
    assert "reminders: 0 instruments due soon, 0 overdue" in empty.stdout
    bad = run(["reminders", "send", "--as-of", "23/11/2026"], dbfile)
    assert bad.returncode == 2 and "is not a date" in bad.stderr


def test_worker_stream_options_are_checked_with_clear_errors(dbfile: Path) -> None:
    from jiliang.cli import _partition_list

    assert _partition_list(None, 8) is None
    assert _partition_list("0,2,5-7,2", 8) == [0, 2, 5, 6, 7]
    for bad in ("8", "3-1", "x", "1-", "-2"):
        with pytest.raises(ValueError, match="--consume"):
            _partition_list(bad, 8)
    r = run(["worker", "--stream", "nats://127.0.0.1:1", "--no-mqtt"], dbfile)
    assert r.returncode == 2 and "jiliang: error: cannot reach NATS at nats://127.0.0.1:1" in r.stderr
    r = run(["worker", "--stream", "nats://127.0.0.1:1", "--stream-name", "a.b", "--no-mqtt"], dbfile)
    assert r.returncode == 2 and "stream name 'a.b'" in r.stderr
