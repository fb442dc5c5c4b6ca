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


# ------------------------------------------------------------------------------- the chain's pages (workflow)

from jiliang.factory.models import Authorization, DeliveryLot, PenaltyStep, Recall, Sampling  # noqa: E402
from jiliang.registry.importing import import_organizations  # noqa: E402
from jiliang.registry.models import Instrument, Organization  # noqa: E402
from tests.pages.data import _table, uscc  # noqa: E402

MAKER2 = uscc("440305", "MA5F00009")
UTILITY2 = uscc("440303", "MA5F00008")
APPLY = {"cond_standards": "计量标准考核证书 〔2025〕001", "cond_environment": "恒温检定室 120 m²",
         "cond_registered_metrologists": "注册计量师 3 名", "cond_management_system": "ISO 9001 / ISO 10012",
         "registered_metrologists": "3", "scope_type_0": "water_meter", "scope_dn_min_0": "15",
         "scope_dn_max_0": "40"}


def other_orgs() -> tuple[Organization, Organization]:
    """A second manufacturer (南山) and a second utility (罗湖), with a user each."""
    import_organizations(table=_table([
        {"uscc": MAKER2, "name": "深圳第二水表厂", "kinds": "manufacturer", "region_code": "440305", "address": "",
         "contact_phone": ""},
        {"uscc": UTILITY2, "name": "深圳罗湖水务有限公司", "kinds": "utility", "region_code": "440303", "address": "",
         "contact_phone": ""}]), actor=SystemPrincipal("t"))
    m2, u2 = Organization.objects.get(uscc=MAKER2), Organization.objects.get(uscc=UTILITY2)
    user_create(actor=SystemPrincipal("t"), username="maker2_u", password=PASSWORD, role="manufacturer",
                organization_id=m2.pk)
    user_create(actor=SystemPrincipal("t"), username="water2_u", password=PASSWORD, role="utility",
                organization_id=u2.pk)
    return m2, u2


def maker_user(registry: Registry) -> Any:
    return user_create(actor=SystemPrincipal("t"), username="maker_u", password=PASSWORD, role="manufacturer",
                       organization_id=registry.maker.pk)


def water_user(registry: Registry) -> Any:
    return user_create(actor=SystemPrincipal("t"), username="water_u", password=PASSWORD, role="utility",
                       organization_id=registry.utility_ft.pk)


def units(registry: Registry, serials: list[str], batch: str = "B1") -> None:
    recs = [{**row(registry, s, batch=batch), "points": json.loads(row(registry, "x")["points"])} for s in serials]
    upload.upload_units(actor=SystemPrincipal("t"), records=recs)


def deliver(registry: Registry, lot_no: str, serials: list[str], utility: Organization | None = None
            ) -> DeliveryLot:
    units(registry, serials)
    return services.lot_deliver(actor=SystemPrincipal("t"), manufacturer_id=registry.maker.pk,
                                utility_id=(utility or registry.utility_ft).pk, lot_no=lot_no, serials=serials)


def test_manufacturer_applies_with_field_errors_then_the_regulator_grants(registry: Registry) -> None:
    maker_user(registry)
    c = login("maker_u")
    assert c.get("/factory/authorizations/").status_code == 200
    page = c.get("/factory/authorizations/apply/").content.decode()
    assert "有满足计量检定项目要求的计量标准" in page and "联合当地市级法定计量检定机构共同开展" in page
    bad = {**APPLY, "cond_standards": "", "registered_metrologists": "1", "scope_dn_min_0": "40",
           "scope_dn_max_0": "15"}
    r = c.post("/factory/authorizations/apply/", bad)
    html = r.content.decode()
    assert r.status_code == 200 and Authorization.objects.count() == 0
    # each problem on its own field (the service's reasons)
    assert re.search(r'id="id_cond_standards".*?required condition is not met', html, re.S)
    assert re.search(r'id="id_registered_metrologists".*?at least 2 registered metrologists', html, re.S)
    assert re.search(r'id="id_scope_dn_max_0".*?need 0 &lt; dn_min &lt;= dn_max', html, re.S)
    r = c.post("/factory/authorizations/apply/", APPLY)
    a = Authorization.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/factory/authorizations/{a.pk}/"
    assert a.status == "applied" and a.scope == SCOPE and a.conditions["standards"].startswith("计量标准考核证书")
    detail = c.get(r["Location"]).content.decode()
    assert 'id="no-actions"' in detail and 'data-event="assess"' not in detail  # the maker cannot assess itself
    assert c.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "assess"}).status_code == 403
    # the Futian regulator does not supervise 南山; the city regulator does
    assert login("reg_futian").get(f"/factory/authorizations/{a.pk}/").status_code == 404
    reg = login("reg_city")
    html = reg.get(f"/factory/authorizations/{a.pk}/").content.decode()
    assert 'data-event="assess"' in html and 'data-event="reject"' not in html and 'data-event="grant"' not in html
    assert reg.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "assess", "note": ""}).status_code == 302
    html = reg.get(f"/factory/authorizations/{a.pk}/").content.decode()
    assert 'data-event="grant"' in html and 'data-event="reject"' in html and "授权有效期三年" in html
    r = reg.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "grant", "note": "现场考核通过"},
                 follow=True)
    a.refresh_from_db()
    assert a.status == "granted" and a.number and a.assessment_note == "现场考核通过"
    assert a.valid_until == a.valid_from.replace(year=a.valid_from.year + 3) - dt.timedelta(days=1)
    html = r.content.decode()
    assert "已完成：考核通过，授权" in html and a.number in html and "water_meter DN15–DN40" in html
    assert 'data-event="suspend"' in html and 'data-event="revoke"' in html and 'data-event="grant"' not in html
    assert a.number in Client().get("/public/factory/").content.decode()


def test_a_refused_step_shows_the_reason_and_changes_nothing(registry: Registry) -> None:
    setup_maker(registry)  # granted on 2025-01-06 (valid until 2028-01-05)
    a = Authorization.objects.get()
    before = (a.status, a.valid_until, a.renewal_requested, a.reason)
    reg = login("reg_city")
    # a suspension needs its reason (it is published)
    r = reg.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "suspend", "note": ""})
    assert r.status_code == 200 and "请填写原因" in r.content.decode()
    # the state machine refuses what the state does not allow, with its reason
    r = reg.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "reinstate", "note": ""})
    html = r.content.decode()
    assert r.status_code == 200 and 'id="action-error"' in html
    assert "only a suspended authorization can be reinstated" in html
    # renewal only inside the window: not offered to the maker, and refused with the window's date
    c = login("maker_u")
    html = c.get(f"/factory/authorizations/{a.pk}/").content.decode()
    window_open = dt.date.today() >= dt.date(2027, 7, 5)
    assert ('data-event="apply_renewal"' in html) == (window_open and dt.date.today() <= a.valid_until)
    if not window_open:
        r = c.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "apply_renewal"})
        assert "the renewal window opens on 2027-07-05" in r.content.decode()
    a.refresh_from_db()
    assert (a.status, a.valid_until, a.renewal_requested, a.reason) == before
    # suspend with a reason, reinstate, revoke: each logged and shown on the public list
    reg.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "suspend", "note": "检定数据不一致"})
    a.refresh_from_db()
    assert a.status == "suspended" and a.reason == "检定数据不一致"
    assert "检定数据不一致" in Client().get("/public/factory/").content.decode()
    reg.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "reinstate"})
    a.refresh_from_db()
    assert a.status == "granted" and a.reason == ""
    reg.post(f"/factory/authorizations/{a.pk}/transition/", {"event": "revoke", "note": "伪造检定数据"})
    a.refresh_from_db()
    assert a.status == "revoked"
    html = reg.get(f"/factory/authorizations/{a.pk}/").content.decode()
    assert 'id="no-actions"' in html


def test_authorization_list_filters_and_scope(registry: Registry) -> None:
    setup_maker(registry)
    m2, _u2 = other_orgs()
    services.authorization_apply(actor=SystemPrincipal("t"), manufacturer_id=m2.pk, conditions=COND,
                                 registered_metrologists=2, scope=SCOPE, today=ON)
    own = login("maker_u").get("/factory/authorizations/").content.decode()
    assert registry.maker.name in own and "深圳第二水表厂" not in own and 'id="apply-link"' in own
    other = login("maker2_u").get("/factory/authorizations/").content.decode()
    assert "深圳第二水表厂" in other and registry.maker.name not in other
    reg = login("reg_city")
    both = reg.get("/factory/authorizations/").content.decode()
    assert both.count('class="auth-link"') == 2 and 'id="apply-link"' not in both
    applied = reg.get("/factory/authorizations/?status=applied").content.decode()
    assert applied.count('class="auth-link"') == 1 and "深圳第二水表厂" in applied
    by_maker = reg.get(f"/factory/authorizations/?maker={registry.maker.pk}").content.decode()
    assert by_maker.count('class="auth-link"') == 1 and registry.maker.name in by_maker
    assert 'id="auth-empty"' in reg.get("/factory/authorizations/?status=rejected").content.decode()
    # the public: nothing but the public list
    citizen = login("citizen")
    assert 'id="auth-empty"' in citizen.get("/factory/authorizations/").content.decode()
    assert citizen.get("/factory/authorizations/apply/").status_code == 403
    assert 'id="lots-empty"' in citizen.get("/factory/lots/").content.decode()
    assert 'id="recalls-empty"' in citizen.get("/factory/recalls/").content.decode()
    assert citizen.get("/factory/install/").status_code == 403
    assert Client().get("/factory/authorizations/").status_code == 302


def test_utility_accepts_refuses_and_installs(registry: Registry) -> None:
    setup_maker(registry)
    water_user(registry)
    _m2, u2 = other_orgs()
    lot = deliver(registry, "L-1", ["U1", "U2", "U3"])
    lot2 = deliver(registry, "L-2", ["U4"])
    elsewhere = deliver(registry, "L-9", ["U9"], utility=u2)
    w = login("water_u")
    listing = w.get("/factory/lots/").content.decode()
    assert "L-1" in listing and "L-2" in listing and "L-9" not in listing
    assert w.get(f"/factory/lots/{elsewhere.pk}/").status_code == 404
    assert login("water2_u").get(f"/factory/lots/{lot.pk}/").status_code == 404
    page = w.get(f"/factory/lots/{lot.pk}/").content.decode()
    assert 'id="accept-form"' in page and 'id="sample-form"' not in page
    # refusing needs a reason; then the lot goes back
    r = w.post(f"/factory/lots/{lot2.pk}/reject/", {"reason": ""})
    assert r.status_code == 200 and 'class="errorlist"' in r.content.decode()
    lot2.refresh_from_db()
    assert lot2.status == "delivered"
    w.post(f"/factory/lots/{lot2.pk}/reject/", {"reason": "外观破损"})
    lot2.refresh_from_db()
    assert lot2.status == "returned" and lot2.rejection_reason == "外观破损"
    assert FactoryUnit.objects.get(serial="U4").status == "returned"
    r = w.post(f"/factory/lots/{lot2.pk}/accept/")
    assert r.status_code == 200 and "the lot cannot be accepted" in r.content.decode()
    # acceptance, then installation
    assert w.post(f"/factory/lots/{lot.pk}/accept/").status_code == 302
    lot.refresh_from_db()
    assert lot.status == "accepted"
    page = w.get(f"/factory/lots/{lot.pk}/").content.decode()
    assert page.count('class="install-link"') == 3
    form = w.get(f"/factory/install/?maker={registry.maker.pk}&serial=U1").content.decode()
    assert 'value="U1"' in form
    today = dt.date.today().isoformat()
    base = {"manufacturer": registry.maker.pk, "install_date": today, "reading": "0.5",
            "address": "福田区景田路 3 栋 402"}
    r = w.post("/factory/install/", {**base, "serial": "NEVER-UPLOADED"})
    html = r.content.decode()
    assert r.status_code == 200 and re.search(r'id="id_serial".*?no factory verification has been uploaded', html,
                                              re.S)
    assert not Instrument.objects.filter(serial="NEVER-UPLOADED").exists()
    r = w.post("/factory/install/", {**base, "serial": "U1", "address": "", "place": ""})
    assert "give the installation address or a place" in r.content.decode()
    r = w.post("/factory/install/", {**base, "serial": "U1", "address": "", "place": "FT-RES-1"}, follow=True)
    assert "已登记安装" in r.content.decode()
    u = FactoryUnit.objects.get(serial="U1")
    assert u.status == "installed" and u.install_reading == 0.5 and u.instrument is not None
    assert Instrument.objects.get(pk=u.instrument_id).place.key == "FT-RES-1"
    # a regulator sees the lot but may neither accept nor install
    reg = login("reg_city")
    assert reg.post(f"/factory/lots/{lot.pk}/accept/").status_code == 403
    assert reg.get("/factory/install/").status_code == 403


def test_regulator_samples_a_lot_records_results_and_sees_the_ladder(registry: Registry) -> None:
    setup_maker(registry)
    lot = deliver(registry, "L-S", [f"S{i}" for i in range(5)])
    assert 'id="sample-form"' not in login("maker_u").get(f"/factory/lots/{lot.pk}/").content.decode()
    assert login("maker_u").post(f"/factory/lots/{lot.pk}/sample/", {"aql": "1.0", "level": "II"}).status_code == 403
    reg = login("reg_city")
    assert 'id="sample-form"' in reg.get(f"/factory/lots/{lot.pk}/").content.decode()
    r = reg.post(f"/factory/lots/{lot.pk}/sample/", {"aql": "1.0", "level": "II", "seed": "seed-1"})
    s = Sampling.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/factory/samplings/{s.pk}/"
    html = reg.get(r["Location"]).content.decode()
    assert f"{s.n} / {s.ac} / {s.re}" in html and "seed-1" in html and 'id="results-form"' in html
    assert 'placeholder="Q1= Q3="' in html
    fields = {f"r_{k}": "Q1=0.4 Q3=0.2" for k in range(len(s.selected))}
    # one drawn unit left blank, one with a malformed entry: refused, nothing recorded
    r = reg.post(f"/factory/samplings/{s.pk}/results/", {**fields, "r_0": "", "r_1": "Q1 0.4"})
    assert r.status_code == 200 and "格式应为" in r.content.decode()
    s.refresh_from_db()
    assert s.outcome == "open" and s.results == {}
    # the service's refusal (no MPE for an unknown point label) lands on that unit's field
    r = reg.post(f"/factory/samplings/{s.pk}/results/", {**fields, "r_0": "Q9=0.1"})
    assert r.status_code == 200 and re.search(r'id="id_r_0".*?errorlist', r.content.decode(), re.S)
    s.refresh_from_db()
    assert s.outcome == "open"
    r = reg.post(f"/factory/samplings/{s.pk}/results/", {**fields, "r_0": "Q1=0.4 Q3=3.5"}, follow=True)
    html = r.content.decode()
    s.refresh_from_db()
    lot.refresh_from_db()
    assert s.outcome == "failed" and s.defectives == 1 and lot.status == "returned"
    assert 'id="penalty"' in html and "整批退回" in html and 'id="results-form"' not in html
    assert PenaltyStep.objects.get().to_stage == "batch_returned"
    assert f'data-serial="{s.selected[0]}"' in html
    # the maker sees the sampling and its step but cannot record
    assert 'id="penalty"' in login("maker_u").get(f"/factory/samplings/{s.pk}/").content.decode()


def test_recall_and_replacement(registry: Registry) -> None:
    setup_maker(registry)
    other_orgs()
    units(registry, ["R1", "R2"], batch="B7")
    units(registry, ["N1"], batch="B8")
    c = login("maker_u")
    page = c.get("/factory/recalls/").content.decode()
    assert 'id="recall-form"' in page and 'id="recalls-empty"' in page and '<option value="B7">' in page
    model = FactoryUnit.objects.get(serial="R1").model_id
    r = c.post("/factory/recalls/", {"model": model, "batch": "B7", "reason": ""})
    assert r.status_code == 200 and Recall.objects.count() == 0
    r = c.post("/factory/recalls/", {"model": model, "batch": "NOPE", "reason": "系统性偏差"})
    assert "no unit of this batch can be recalled" in r.content.decode() and Recall.objects.count() == 0
    r = c.post("/factory/recalls/", {"model": model, "batch": "B7", "reason": "Q3 系统性正偏差"})
    rc = Recall.objects.get()
    assert r.status_code == 302 and rc.units == 2
    html = c.get(f"/factory/recalls/{rc.pk}/").content.decode()
    assert 'id="replace-form"' in html and "0 / 2" in html
    r = c.post(f"/factory/recalls/{rc.pk}/replace/", {"serial": "R1", "replacement_serial": "R2"})
    assert "the replacement must be a verified, conforming unit in stock" in r.content.decode()
    r = c.post(f"/factory/recalls/{rc.pk}/replace/", {"serial": "R1", "replacement_serial": "N1"}, follow=True)
    html = r.content.decode()
    assert "1 / 2" in html and re.search(r'data-serial="R1".*?N1', html, re.S)
    # another maker sees nothing of it; the regulator sees it but records no replacement
    assert login("maker2_u").get(f"/factory/recalls/{rc.pk}/").status_code == 404
    reg_html = login("reg_city").get(f"/factory/recalls/{rc.pk}/").content.decode()
    assert "1 / 2" in reg_html and 'id="replace-form"' not in reg_html
