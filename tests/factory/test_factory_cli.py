"""``jiliang factory …`` as a script runs it: a fresh database file prepared in its own process (the page
tests' registry, the manufacturer granted, a delivered lot), then real subprocesses and their exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import datetime as dt, json
from jiliang.cli import _setup, ensure_migrated
_setup(); ensure_migrated()
from jiliang.accounts.models import SystemPrincipal
from jiliang.factory import services, upload
from tests.pages.data import _table, build_registry, uscc
from jiliang.registry.importing import import_organizations
reg = build_registry()
maker2 = uscc("440305", "MA5F00009")
import_organizations(table=_table([{"uscc": maker2, "name": "第二水表厂", "kinds": "manufacturer",
                                    "region_code": "440305", "address": "", "contact_phone": ""}]),
                     actor=SystemPrincipal("test:setup"))
admin = SystemPrincipal("test:setup")
on = dt.date(2025, 1, 6)
a = services.authorization_apply(actor=admin, manufacturer_id=reg.maker.pk, registered_metrologists=2,
    conditions={"standards": "a", "environment": "b", "registered_metrologists": "c", "management_system": "d"},
    scope=[{"instrument_type": "water_meter", "dn_min": 15, "dn_max": 40}], today=on)
services.authorization_transition(actor=admin, authorization_id=a.pk, event="assess", today=on)
a = services.authorization_transition(actor=admin, authorization_id=a.pk, event="grant", today=on)
pts = [{"point": "Q1", "error_pct": 0.5}, {"point": "Q3", "error_pct": 0.2}]
recs = [{"name": "饮用冷水水表", "model": "LXS-15", "size": "DN15", "serial": f"L{i:03d}", "accuracy_class": "2",
         "maker": reg.maker.uscc, "production_date": "2025-03-01", "verification_date": "2025-03-02",
         "conclusion": "合格", "institution": "计量室", "batch": "B1", "points": pts} for i in range(40)]
upload.upload_units(actor=admin, records=recs)
lot = services.lot_deliver(actor=admin, manufacturer_id=reg.maker.pk, utility_id=reg.utility_ft.pk, lot_no="L1",
                           serials=[r["serial"] for r in recs])
print(json.dumps({"maker": reg.maker.uscc, "maker2": maker2, "lot": lot.pk, "number": a.number}))
"""


def _env(db: Path) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "JILIANG_HOME": str(db.parent)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def run(args: list[str], db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jiliang.cli", *args], capture_output=True, text=True, env=_env(db),
                          cwd=ROOT, timeout=120, check=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    db = tmp_path_factory.mktemp("factory-cli") / "x.sqlite3"
    r = subprocess.run([sys.executable, "-c", SETUP], capture_output=True, text=True, env=_env(db), cwd=ROOT,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    return db, json.loads(r.stdout.strip().splitlines()[-1])


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _unit(maker: str, serial: str) -> dict[str, Any]:
    return {"name": "饮用冷水水表", "model": "LXS-15", "size": "DN15", "serial": serial, "accuracy_class": "2",
            "maker": maker, "production_date": "2025-03-01", "verification_date": "2025-03-02",
            "conclusion": "合格", "institution": "计量室", "batch": "B2",
            "points": json.dumps([{"point": "Q1", "error_pct": 0.5}, {"point": "Q3", "error_pct": 0.1}])}


def test_authorizations_text_and_json(world: tuple[Path, dict[str, Any]]) -> None:
    db, info = world
    r = run(["factory", "authorizations", "--format", "json"], db)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 1 and rows[0]["status"] == "granted" and rows[0]["uscc"] == info["maker"]
    assert rows[0]["number"] == info["number"] and rows[0]["valid_until"] == "2028-01-05"
    assert rows[0]["scope"] == [{"instrument_type": "water_meter", "dn_min": 15, "dn_max": 40}]
    text = run(["factory", "authorizations"], db)
    assert text.returncode == 0 and info["number"] in text.stdout and "water_meter DN15–DN40" in text.stdout
    none = run(["factory", "authorizations", "--status", "applied"], db)
    assert none.returncode == 0 and none.stdout.strip() == "no authorizations"
    assert run(["factory", "authorizations", "--status", "bogus"], db).returncode == 2


def test_upload_as_the_manufacturer(world: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db, info = world
    good = tmp_path / "good.csv"
    good.write_text(_csv([_unit(info["maker"], "C1"), _unit(info["maker"], "C2")]), encoding="utf-8")
    r = run(["factory", "upload", str(good), "--maker", info["maker"]], db)
    assert r.returncode == 0, r.stderr
    assert "factory units: 2 stored, 0 unchanged, 0 rejected" in r.stdout
    again = run(["factory", "upload", str(good), "--maker", info["maker"]], db)
    assert again.returncode == 0 and "0 stored, 2 unchanged" in again.stdout
    # acting as the manufacturer, a row of another maker is refused by the service's scope: nothing stored
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(_csv([_unit(info["maker"], "C3"), _unit(info["maker2"], "C4")]), encoding="utf-8")
    r = run(["factory", "upload", str(mixed), "--maker", info["maker"]], db)
    assert r.returncode == 1
    assert "row 3, field maker" in r.stderr and "a manufacturer uploads only units it made" in r.stderr
    # as the administrator the same row fails for its own reason (that maker holds no authorization)
    r = run(["factory", "upload", str(mixed)], db)
    assert r.returncode == 1 and "holds no factory verification authorization" in r.stderr
    only_c3 = tmp_path / "c3.csv"
    only_c3.write_text(_csv([_unit(info["maker"], "C3")]), encoding="utf-8")
    stored = run(["factory", "upload", str(only_c3), "--maker", info["maker"]], db)
    assert "1 stored, 0 unchanged" in stored.stdout  # the refused uploads stored nothing of C3
    assert run(["factory", "upload", str(tmp_path / "missing.csv")], db).returncode == 2
    unknown = run(["factory", "upload", str(good), "--maker", "91440300MA5F0000XX"], db)
    assert unknown.returncode == 2 and "no organization with credit code" in unknown.stderr


def test_sample_a_lot(world: tuple[Path, dict[str, Any]]) -> None:
    db, info = world
    r = run(["factory", "sample", str(info["lot"]), "--seed", "s-1", "--format", "json"], db)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["lot_id"] == info["lot"] and s["seed"] == "s-1" and s["n"] == len(s["selected"]) > 0
    assert s["ac"] >= 0 and s["re"] == s["ac"] + 1 and all(x.startswith("L") for x in s["selected"])
    again = run(["factory", "sample", str(info["lot"])], db)  # the lot is now being sampled
    assert again.returncode == 1 and "only a delivered lot can be sampled" in again.stderr
    assert run(["factory", "sample", "99999"], db).returncode == 2
    assert run(["factory", "sample", "not-a-number"], db).returncode == 2
