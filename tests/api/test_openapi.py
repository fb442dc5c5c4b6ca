"""API responses validate against the OpenAPI document, so the document cannot drift from the code."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from jsonschema import Draft202012Validator

from jiliang.config.api import api
from tests.world import World

pytestmark = pytest.mark.django_db
SCHEMA = api.get_openapi_schema()


def _operation(method: str, url: str) -> dict[str, Any]:
    path = url.split("?")[0]
    for template, ops in SCHEMA["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", r"[^/]+", template), path) and method in ops:
            return dict(ops[method])
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def check(method: str, url: str, resp: Any) -> Any:
    op = _operation(method, url)
    documented = op["responses"].get(resp.status_code) or op["responses"].get(str(resp.status_code))
    assert documented, f"{method} {url}: status {resp.status_code} is not documented"
    schema = documented["content"]["application/json"]["schema"]
    body = resp.json()
    Draft202012Validator({**schema, "components": SCHEMA["components"]}).validate(body)
    return body


def test_documented_responses_match(world: World) -> None:
    c = Client()
    c.force_login(world.users["admin"])
    i = world.instruments["I_F"]
    for url in ["/api/v1/regions", "/api/v1/instrument-types", "/api/v1/organizations", "/api/v1/places",
                "/api/v1/instrument-models", "/api/v1/instruments", f"/api/v1/instruments/{i.pk}",
                f"/api/v1/organizations/{world.orgs['maker'].pk}", f"/api/v1/places/{world.places['P_F'].pk}",
                "/api/v1/instruments/999999"]:
        check("get", url, c.get(url))
    r = c.patch(f"/api/v1/instruments/{i.pk}", {"status": "in_stock"}, content_type="application/json")
    body = check("patch", f"/api/v1/instruments/{i.pk}", r)
    assert body["error"]["code"] == "validation_failed" and body["error"]["details"][0]["field"] == "status"
    r = c.post("/api/v1/instruments", {"device_id": 1}, content_type="application/json")
    body = check("post", "/api/v1/instruments", r)
    assert r.status_code == 422 and body["error"]["details"]


def test_docs_page_is_served(world: World) -> None:
    c = Client()
    assert c.get("/api/docs").status_code == 200
    assert c.get("/api/openapi.json").json()["info"]["title"].startswith("Jiliang")


def test_pagination_limits(world: World) -> None:
    c = Client()
    c.force_login(world.users["admin"])
    body = c.get("/api/v1/instruments?limit=2&offset=1").json()
    assert (body["count"], body["limit"], body["offset"], len(body["items"])) == (3, 2, 1, 2)
    assert c.get("/api/v1/instruments?limit=100000").json()["limit"] == 500
