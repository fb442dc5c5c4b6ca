"""The 二检合一 pages: the workbench with the upload and its row-level errors, batch statistics with the chart
data, a sampling with its OC curve, the public list without sign-in, and who may open what."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from jiliang.accounts.models import SystemPrincipal
from jiliang.accounts.services import user_create
from jiliang.factory import services, upload
from jiliang.factory.models import FactoryUnit
from tests.pages.data import PASSWORD, Registry

pytestmark = pytest.mark.django_db
ON = dt.date(2025, 1, 6)
SCOPE = [{"instrument_type": "water_meter", "dn_min": 15, "dn_max": 40}]
COND = {"standards": "a", "environment": "b", "registered_metrologists": "c", "management_system": "d"}
COLS = ["name", "model", "size", "serial", "accuracy_class", "maker", "production_date", "verification_date",
        "conclusion", "institution", "points", "batch"]


def setup_maker(registry: Registry) -> Any:
    admin = SystemPrincipal("test")
    a = services.authorization_apply(actor=admin, manufacturer_id=registry.maker.pk, conditions=COND,
                                     registered_metrologists=2, scope=SCOPE, today=ON)
    services.authorization_transition(actor=admin, authorization_id=a.pk, event="assess", today=ON)
    services.authorization_transition(actor=admin, authorization_id=a.pk, event="grant", today=ON)
    return user_create(actor=admin, username="maker_u", password=PASSWORD, role="manufacturer",
                       organization_id=registry.maker.pk)


def row(registry: Registry, serial: str, size: str = "DN15", q3: float = 0.3, batch: str = "B1") -> dict[str, Any]:
    return {"name": "饮用冷水水表", "model": "LXS-15", "size": size, "serial": serial, "accuracy_class": "2",
            "maker": registry.maker.uscc, "production_date": "2025-03-01", "verification_date": "2025-03-02",
            "conclusion": "合格", "institution": "计量室", "batch": batch,
            "points": json.dumps([{"point": "Q1", "error_pct": 0.5}, {"point": "Q3", "error_pct": q3}])}


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    import csv
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLS)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def embedded(html: str, element_id: str) -> Any:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</script>', html, re.S)
    assert m, element_id
    return json.loads(m.group(1))


def login(username: str) -> Client:
    c = Client()
    assert c.login(username=username, password=PASSWORD)
    return c


def test_upload_page_shows_row_errors_then_accepts_the_fixed_file(registry: Registry) -> None:
    setup_maker(registry)
    c = login("maker_u")
    page = c.get("/factory/")
    assert page.status_code == 200 and b'id="upload-form"' in page.content
    bad = csv_bytes([row(registry, "A1"), row(registry, "A2", size="DN50")])
    r = c.post("/factory/", {"file": SimpleUploadedFile("u.csv", bad)})
    assert r.status_code == 200
    html = r.content.decode()
    assert 'id="upload-problems"' in html and 'data-row="3"' in html
    assert "outside the authorized scope (water_meter DN15–DN40)" in html
    assert FactoryUnit.objects.count() == 0
    good = csv_bytes([row(registry, "A1"), row(registry, "A2")])
    r = c.post("/factory/", {"file": SimpleUploadedFile("u.csv", good)}, follow=True)
    assert r.status_code == 200 and "已上传 2 台出厂检定记录" in r.content.decode()
    assert FactoryUnit.objects.count() == 2


def test_batches_page_table_chart_and_scope(registry: Registry) -> None:
    setup_maker(registry)
    recs = [{**row(registry, f"S{i}"), "points": json.loads(row(registry, "x")["points"])} for i in range(5)]
    upload.upload_units(actor=SystemPrincipal("t"), records=recs)
    c = login("reg_city")
    r = c.get("/factory/batches/")
    html = r.content.decode()
    assert r.status_code == 200 and 'id="batch-chart"' in html and "factory/charts.js" in html
    assert html.count('data-batch="B1"') == 2  # Q1 and Q3
    assert "趋向于零" not in html or "有偏差" in html  # constant errors: std 0 → significant
    data = embedded(html, "batch-chart-data")
    assert data["mpe"] == 5.0 and {s["name"].split()[-1] for s in data["series"]} == {"Q1", "Q3"}
    # the Futian regulator does not supervise the Nanshan manufacturer; a market entity has no factory page data
    assert 'data-batch="B1"' not in login("reg_futian").get("/factory/batches/").content.decode()
    assert 'id="batches-empty"' in login("market_ft").get("/factory/batches/").content.decode()
    assert Client().get("/factory/batches/").status_code == 302  # sign-in required


def test_sampling_page_shows_plan_draw_and_oc_curve(registry: Registry) -> None:
    setup_maker(registry)
    admin = SystemPrincipal("t")
    recs = [{**row(registry, f"L{i:03d}"), "points": json.loads(row(registry, "x")["points"])} for i in range(60)]
    upload.upload_units(actor=admin, records=recs)
    lot = services.lot_deliver(actor=admin, manufacturer_id=registry.maker.pk, utility_id=registry.utility_ft.pk,
                               lot_no="L1", serials=[r["serial"] for r in recs])
    s = services.sampling_open(actor=admin, lot_id=lot.pk, seed="seed-x")
    html = login("reg_city").get(f"/factory/samplings/{s.pk}/").content.decode()
    assert f"{s.n} / {s.ac} / {s.re}" in html and "seed-x" in html and s.selected[0] in html
    oc = embedded(html, "oc-chart-data")
    assert oc["plan"][0] == [0.0, 1.0] and oc["zero"][-1][1] < oc["plan"][-1][1] + 1e-9
    assert login("reg_futian").get(f"/factory/samplings/{s.pk}/").status_code == 404


def test_public_list_needs_no_sign_in(registry: Registry) -> None:
    setup_maker(registry)
    r = Client().get("/public/factory/")
    html = r.content.decode()
    assert r.status_code == 200 and registry.maker.name in html and "water_meter DN15–DN40" in html
    assert "有效" in html and "2028-01-05" in html
