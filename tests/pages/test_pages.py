"""Server-rendered pages through Django's test client: rendering, sign-in, scope, privacy, language,
query counts, throttling, editing and the bulk import."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from jiliang.core.models import ChangeLog
from jiliang.registry.models import Instrument, Organization
from tests.pages.data import (
    FUTIAN,
    MARKET_FT,
    PASSWORD,
    PRIVATE_KEY_HEX,
    PRIVATE_PHONE,
    SW_HASH,
    Registry,
    build_registry,
    uscc,
)

pytestmark = pytest.mark.django_db


def login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def page_urls(reg: Registry) -> list[str]:
    return [
        reverse("analytics:dashboard"),
        reverse("registry:instrument_list"),
        reverse("registry:instrument_list") + f"?district={FUTIAN}&status=in_service&type=scale&q=SC",
        reverse("registry:instrument_detail", args=[reg.scale_ft.pk]),
        reverse("registry:instrument_edit", args=[reg.scale_ft.pk]),
        reverse("registry:instrument_label_svg", args=[reg.scale_ft.pk]),
        reverse("registry:instrument_label_png", args=[reg.scale_ft.pk]),
        reverse("registry:organization_list"),
        reverse("registry:organization_detail", args=[reg.market_ft.pk]),
        reverse("registry:place_list"),
        reverse("registry:place_detail", args=[reg.scale_ft.place_id]),
        reverse("registry:import"),
    ]


# ------------------------------------------------------------------------------------------ rendering

@pytest.mark.parametrize("who", ["admin", "city", "futian"])
def test_every_page_renders_for_an_authorised_user(client: Client, registry: Registry, who: str) -> None:
    login(client, registry.users[who])
    for url in page_urls(registry):
        response = client.get(url)
        assert response.status_code == 200, url
        if response["Content-Type"].startswith("text/html"):
            body = response.content.decode()
            assert "计量监管平台" in body, url
            assert "<script>" not in body, f"{url}: inline script breaks the CSP"
            assert " onclick=" not in body and " onchange=" not in body, url


def test_pages_redirect_to_login_when_signed_out(client: Client, registry: Registry) -> None:
    for url in page_urls(registry):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("accounts:login") + "?next="), url
    assert client.post(reverse("registry:import_confirm"), {"token": "x", "mode": "all"}).status_code == 302


def test_login_page_renders_and_signs_in(client: Client, registry: Registry) -> None:
    page = client.get(reverse("accounts:login"))
    assert page.status_code == 200
    assert "登录" in page.content.decode()
    response = client.post(reverse("accounts:login"), {"username": "reg_futian", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_logout_is_post_only(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    assert client.get(reverse("accounts:logout")).status_code == 405
    assert client.post(reverse("accounts:logout")).status_code == 302
    assert client.get("/").status_code == 302


def test_base_layout_has_navigation_language_switch_and_no_cdn(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    body = client.get("/").content.decode()
    assert 'action="/i18n/setlang/"' in body and 'name="csrfmiddlewaretoken"' in body
    for link in ("/instruments/", "/organizations/", "/places/", "/import/"):
        assert f'href="{link}"' in body
    assert "/static/vendor/htmx/htmx.min.js" in body
    assert not re.search(r'(src|href)="(https?:)?//', body), "no CDN: every asset comes from the package"


@pytest.mark.parametrize("path", ["jiliang/app.css", "jiliang/app.js", "jiliang/dashboard.js", "jiliang/favicon.svg",
                                  "vendor/htmx/htmx.min.js", "vendor/echarts/echarts.min.js"])
def test_static_assets_are_served_without_collectstatic(client: Client, path: str) -> None:
    response = client.get(f"/static/{path}")
    assert response.status_code == 200, f"/static/{path} is not served (STATICFILES_DIRS must list jiliang/static)"


def test_csp_header_on_pages(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    assert "script-src 'self'" in client.get("/").headers["Content-Security-Policy"]


# ------------------------------------------------------------------------------------------ dashboard

def test_dashboard_counts_and_chart_data(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    response = client.get("/")
    body = response.content.decode()
    data = response.context["chart_data"]
    assert sum(r["value"] for r in data["by_type"]) == 3  # the 福田 instruments only
    assert {r["key"] for r in data["by_district"]} == {FUTIAN}
    assert {r["key"]: r["value"] for r in data["by_status"]} == {"in_service": 2, "suspended": 1}
    assert response.context["summary"].due.total == 1  # the water meter past its 6-year life
    assert response.context["summary"].due.overdue == 1
    assert 'id="dashboard-data"' in body and "/static/jiliang/dashboard.js" in body
    assert "/static/vendor/echarts/echarts.min.js" in body
    embedded = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', body, re.S)
    assert embedded and json.loads(embedded.group(1)) == data


def test_dashboard_empty_state(client: Client, registry: Registry) -> None:
    login(client, registry.users["public"])
    body = client.get("/").content.decode()
    assert 'id="dashboard-empty"' in body
    assert "dashboard-data" not in body


# ------------------------------------------------------------------------------------------ scope

def test_district_regulator_cannot_open_an_instrument_of_another_district(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    other = registry.scale_lh.pk
    for name in ("registry:instrument_detail", "registry:instrument_edit", "registry:instrument_label_svg",
                 "registry:instrument_label_png"):
        assert client.get(reverse(name, args=[other])).status_code == 404, name
    assert client.get(reverse("registry:organization_detail", args=[registry.market_lh.pk])).status_code == 404
    assert client.get(reverse("registry:place_detail", args=[registry.scale_lh.place_id])).status_code == 404
    listing = client.get(reverse("registry:instrument_list")).content.decode()
    assert "SC-FT-0001" in listing and "SC-LH-0001" not in listing
    # the city regulator sees both districts
    login(client, registry.users["city"])
    assert client.get(reverse("registry:instrument_detail", args=[other])).status_code == 200


def test_market_entity_sees_own_instruments_only_and_cannot_edit_others(client: Client, registry: Registry) -> None:
    login(client, registry.users["market"])
    assert client.get(reverse("registry:instrument_detail", args=[registry.scale_ft.pk])).status_code == 200
    assert client.get(reverse("registry:instrument_detail", args=[registry.water_ft.pk])).status_code == 404
    assert client.get(reverse("registry:instrument_detail", args=[registry.scale_lh.pk])).status_code == 404


def test_viewer_without_change_right_gets_403_on_edit(client: Client, registry: Registry) -> None:
    from jiliang.accounts.models import SystemPrincipal
    from jiliang.accounts.services import user_create

    inspector = user_create(actor=SystemPrincipal("test"), username="insp", password=PASSWORD, role="inspector",
                            region_code=FUTIAN)
    login(client, inspector)
    url = reverse("registry:instrument_edit", args=[registry.scale_ft.pk])
    assert client.get(reverse("registry:instrument_detail", args=[registry.scale_ft.pk])).status_code == 200
    assert client.get(url).status_code == 403
    assert client.post(url, {"status": "retired"}).status_code == 403
    assert Instrument.objects.get(pk=registry.scale_ft.pk).status == "in_service"


def test_unknown_ids_are_404(client: Client, registry: Registry) -> None:
    login(client, registry.users["admin"])
    assert client.get(reverse("registry:instrument_detail", args=[999999])).status_code == 404
    assert client.get(reverse("registry:organization_detail", args=[999999])).status_code == 404
    assert client.get(reverse("registry:place_detail", args=[999999])).status_code == 404


# ------------------------------------------------------------------------------------------ instruments

def test_instrument_list_filters(client: Client, registry: Registry) -> None:
    login(client, registry.users["city"])
    url = reverse("registry:instrument_list")

    def devices(query: str) -> set[str]:
        return {i.device_id for i in client.get(url + query).context["instruments"]}

    assert devices("") == {"SC-FT-0001", "SC-FT-0002", "WM-FT-0001", "SC-LH-0001"}
    assert devices("?type=water_meter") == {"WM-FT-0001"}
    assert devices("?status=suspended") == {"SC-FT-0002"}
    assert devices(f"?district={FUTIAN}") == {"SC-FT-0001", "SC-FT-0002", "WM-FT-0001"}
    assert devices("?q=LH") == {"SC-LH-0001"}
    assert devices("?q=东门") == {"SC-LH-0001"}  # owner name
    assert devices("?status=nonsense") == devices("")  # an unknown value drops that filter only


def test_instrument_list_htmx_partial(client: Client, registry: Registry) -> None:
    login(client, registry.users["city"])
    response = client.get(reverse("registry:instrument_list") + "?type=water_meter", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith("<div id=\"instrument-results\"") and "<html" not in body
    assert "WM-FT-0001" in body and "SC-FT-0001" not in body
    assert "HX-Request" in response.headers["Vary"]


def test_instrument_list_query_count_does_not_grow_with_rows(client: Client, db: None,
                                                             django_assert_max_num_queries: Any) -> None:
    reg = build_registry(extra_scales=60)
    login(client, reg.users["futian"])
    url = reverse("registry:instrument_list")
    client.get(url)  # warm up (session, content types)
    with django_assert_max_num_queries(12) as few:
        response = client.get(url)
    assert len(response.context["instruments"]) == 50
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(url + "?page=2").context["instruments"]) == 13


def test_pagination(client: Client, db: None) -> None:
    reg = build_registry(extra_scales=60)
    login(client, reg.users["admin"])
    first = client.get(reverse("registry:instrument_list") + "?status=in_service")
    assert first.context["page"].paginator.num_pages == 2
    body = first.content.decode()
    assert "?status=in_service&amp;page=2" in body
    assert client.get(reverse("registry:instrument_list") + "?page=999").context["page"].number == 2


def test_instrument_detail_shows_fields_history_and_links(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    inst = registry.scale_ft
    body = client.get(reverse("registry:instrument_detail", args=[inst.pk])).content.decode()
    for text in ("SC-FT-0001", "S0001", "ACS-15", "福田农产品市场管理有限公司", "福华农贸市场", "深圳衡准衡器有限公司",
                 SW_HASH, "FW 2.1", "变更记录", "暂无检定记录"):
        assert text in body, text
    assert f"/q/{inst.qr_token}/" in body
    assert reverse("registry:instrument_label_svg", args=[inst.pk]) in body
    assert reverse("registry:instrument_edit", args=[inst.pk]) in body


def test_instrument_edit_moves_lifecycle_and_logs(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    inst = registry.scale_ft_suspended
    url = reverse("registry:instrument_edit", args=[inst.pk])
    form = client.get(url).context["form"]
    assert {c for c, _ in form.fields["status"].choices} == {"suspended", "in_service", "retired"}
    response = client.post(url, {"status": "in_service", "place_key": "FT-MKT-1", "install_date": "2024-03-01",
                                 "sw_id": "FW 3.0", "sw_hash": "abc123"})
    assert response.status_code == 302
    inst.refresh_from_db()
    assert (inst.status, inst.sw_id, inst.sw_hash) == ("in_service", "FW 3.0", "abc123")
    entry = ChangeLog.objects.filter(model="instrument", object_id=str(inst.pk), action="update").get()
    assert entry.actor_label == "reg_futian"
    detail = client.get(response["Location"]).content.decode()
    assert "FW 3.0" in detail and "已保存" in detail


def test_instrument_edit_shows_service_problems_per_field(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    inst = registry.scale_ft
    url = reverse("registry:instrument_edit", args=[inst.pk])
    response = client.post(url, {"status": "in_service", "place_key": "NO-SUCH-PLACE", "install_date": "2024-03-01",
                                 "sw_id": "FW 2.1", "sw_hash": SW_HASH})
    assert response.status_code == 200
    assert "no place with this key is registered" in response.context["form"].errors["place_key"][0]
    # a place in another district is refused by the service, shown beside the field
    response = client.post(url, {"status": "in_service", "place_key": "LH-MKT-1", "install_date": "2024-03-01",
                                 "sw_id": "FW 2.1", "sw_hash": SW_HASH})
    assert "outside the region" in response.context["form"].errors["place_key"][0]
    inst.refresh_from_db()
    assert inst.place.key == "FT-MKT-1"


def test_qr_label_svg_and_png(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    inst = registry.scale_ft
    svg = client.get(reverse("registry:instrument_label_svg", args=[inst.pk]))
    assert svg["Content-Type"].startswith("image/svg+xml")
    text = svg.content.decode()
    assert text.startswith("<svg") and "SC-FT-0001" in text and "电子计价秤" in text
    png = client.get(reverse("registry:instrument_label_png", args=[inst.pk]))
    assert png["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG\r\n\x1a\n")


# ------------------------------------------------------------------------------------------ organisations, places

def test_organization_and_place_pages(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    orgs = client.get(reverse("registry:organization_list")).content.decode()
    assert "福田农产品市场管理有限公司" in orgs and "罗湖东门市场经营部" not in orgs
    detail = client.get(reverse("registry:organization_detail", args=[registry.market_ft.pk])).content.decode()
    assert MARKET_FT in detail and "福华农贸市场" in detail and "SC-FT-0001" in detail
    places = client.get(reverse("registry:place_list") + "?kind=residence").content.decode()
    assert "FT-RES-1" in places and "FT-MKT-1" not in places
    place = client.get(reverse("registry:place_detail", args=[registry.water_ft.place_id])).content.decode()
    assert "WM-FT-0001" in place


# ------------------------------------------------------------------------------------------ public page

def test_public_page_needs_no_login_and_shows_public_fields(client: Client, registry: Registry) -> None:
    inst = registry.scale_ft
    response = client.get(reverse("portal:instrument", args=[inst.qr_token]))
    assert response.status_code == 200
    body = response.content.decode()
    for text in ("SC-FT-0001", "电子计价秤", "ACS-15", "深圳衡准衡器有限公司", "福田农产品市场管理有限公司",
                 "福华农贸市场", "福田区", "在用", "最近检定结果", "暂无检定记录"):
        assert text in body, text
    assert response.headers["X-Robots-Tag"] == "noindex"


def test_public_page_shows_nothing_private(client: Client, registry: Registry) -> None:
    inst = registry.scale_ft
    body = client.get(reverse("portal:instrument", args=[inst.qr_token])).content.decode()
    for secret in (PRIVATE_PHONE, PRIVATE_KEY_HEX, SW_HASH, "FW 2.1", MARKET_FT, inst.serial, "S0001",
                   f">{inst.qr_token}<", "contact_phone", "public_key", "sw_hash", "/instruments/",
                   "/organizations/", "/places/"):
        assert secret not in body, secret
    # the token appears only where the language switch sends the person back to this page
    assert body.count(inst.qr_token) == 1


def test_public_page_unknown_or_malformed_token_is_404(client: Client, registry: Registry) -> None:
    assert client.get("/q/AAAAAAAAAAAAAAAAAAAAAA/").status_code == 404
    assert client.get("/q/bad!token/").status_code == 404


# ------------------------------------------------------------------------------------------ language

def test_language_switch_yields_english(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    assert "计量器具" in client.get(reverse("registry:instrument_list")).content.decode()
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/instruments/"})
    assert response.status_code == 302 and response["Location"] == "/instruments/"
    body = client.get("/instruments/").content.decode()
    assert '<html lang="en">' in body
    for text in ("Instruments", "Organizations", "Places", "Price-computing scale", "In service", "Futian",
                 "Sign out"):
        assert text in body, text
    assert "计量器具" not in body
    detail = client.get(reverse("registry:instrument_detail", args=[registry.scale_ft.pk])).content.decode()
    for text in ("Device ID", "Serial number", "Change history", "No verification records yet"):
        assert text in detail, text
    public = client.get(reverse("portal:instrument", args=[registry.scale_ft.qr_token])).content.decode()
    assert "Price-computing scale" in public and "Latest verification result" in public
    # and back to Chinese
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert "计量器具" in client.get("/instruments/").content.decode()


def test_english_dashboard_labels(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    data = client.get("/").context["chart_data"]
    assert {r["label"] for r in data["by_type"]} == {"Price-computing scale", "Cold potable water meter"}
    assert {r["label"] for r in data["by_status"]} == {"In service", "Suspended"}
    assert {r["label"] for r in data["by_district"]} == {"Futian"}


# ------------------------------------------------------------------------------------------ sign-in throttling

def test_login_throttling_locks_after_repeated_failures(client: Client, registry: Registry, settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 3
    url = reverse("accounts:login")
    for _ in range(2):
        response = client.post(url, {"username": "reg_futian", "password": "wrong-password"})
        assert response.status_code == 200
        assert "用户名或密码不正确" in response.content.decode()
    locked = client.post(url, {"username": "reg_futian", "password": "wrong-password"})
    assert locked.status_code == 429
    assert "登录失败次数过多" in locked.content.decode()
    # even the right password is refused while locked
    refused = client.post(url, {"username": "reg_futian", "password": PASSWORD})
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    # another account from another address is unaffected
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post(url, {"username": "reg_city", "password": PASSWORD}).status_code == 302


def test_successful_login_resets_the_failure_count(client: Client, registry: Registry, settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 3
    url = reverse("accounts:login")
    for _ in range(2):
        client.post(url, {"username": "reg_futian", "password": "wrong-password"})
    assert client.post(url, {"username": "reg_futian", "password": PASSWORD}).status_code == 302
    client.post(reverse("accounts:logout"))
    for _ in range(2):
        assert client.post(url, {"username": "reg_futian", "password": "wrong-password"}).status_code == 200


# ------------------------------------------------------------------------------------------ bulk import

def _csv(rows: list[list[str]]) -> bytes:
    return "\n".join(",".join(r) for r in rows).encode()


ORG_HEADER = ["uscc", "name", "kinds", "region_code", "address", "contact_phone"]


def _upload(client: Client, kind: str, name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(reverse("registry:import"), {"kind": kind, "file": SimpleUploadedFile(name, data)})


def test_import_preview_writes_nothing_then_confirm_imports(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    good1, good2 = uscc(FUTIAN, "MA5F10001"), uscc(FUTIAN, "MA5F10002")
    data = _csv([ORG_HEADER,
                 [good1, "新市场一", "market_entity", FUTIAN, "", ""],
                 [good2, "新市场二", "market_entity", FUTIAN, "", ""],
                 [good1[:-1] + ("0" if good1[-1] != "0" else "1"), "坏代码", "market_entity", FUTIAN, "", ""],
                 [uscc(FUTIAN, "MA5F10004"), "别区单位", "market_entity", "440303", "", ""]])
    before = Organization.objects.count()
    preview = _upload(client, "organizations", "orgs.csv", data)
    assert preview.status_code == 200
    report = preview.context["report"]
    assert (report.rows, report.valid, report.invalid) == (4, 2, 2)
    body = preview.content.decode()
    assert 'id="import-problems"' in body and "region_code" in body and "outside the region" in body
    assert Organization.objects.count() == before, "the preview must not write"
    token = preview.context["token"]
    # all-or-nothing refuses the file and keeps it for another try
    refused = client.post(reverse("registry:import_confirm"), {"token": token, "mode": "all"})
    assert refused.context["report"].error and Organization.objects.count() == before
    done = client.post(reverse("registry:import_confirm"), {"token": token, "mode": "skip_invalid"})
    assert done.status_code == 200 and done.context["report"].valid == 2
    assert Organization.objects.count() == before + 2
    # the upload is gone once imported
    again = client.post(reverse("registry:import_confirm"), {"token": token, "mode": "skip_invalid"})
    assert again.status_code == 302 and Organization.objects.count() == before + 2


def test_import_bad_header_and_wrong_file_type(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    preview = _upload(client, "organizations", "orgs.csv", _csv([["uscc", "name"], ["x", "y"]]))
    assert preview.context["report"].error and not preview.context["token"]
    wrong = _upload(client, "organizations", "orgs.txt", b"hello")
    assert wrong.status_code == 200 and wrong.context["form"].errors["file"]


def test_import_token_of_another_session_is_refused(client: Client, registry: Registry) -> None:
    login(client, registry.users["futian"])
    data = _csv([ORG_HEADER, [uscc(FUTIAN, "MA5F20001"), "新市场", "market_entity", FUTIAN, "", ""]])
    token = _upload(client, "organizations", "orgs.csv", data).context["token"]
    other = login(Client(), registry.users["admin"])
    response = other.post(reverse("registry:import_confirm"), {"token": token, "mode": "all"})
    assert response.status_code == 302
    assert not Organization.objects.filter(name="新市场").exists()
