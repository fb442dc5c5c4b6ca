"""API tokens through the page and the command line: shown once, stored hashed, revocable, scoped."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from jiliang.accounts.models import ApiToken, hash_token
from jiliang.accounts.services import api_token_create
from tests.world import World

pytestmark = pytest.mark.django_db


def test_create_use_and_revoke_through_the_page(world: World) -> None:
    c = Client()
    c.force_login(world.users["water_user"])
    r = c.post("/tokens/", {"action": "create", "name": "智能水表平台"})
    assert r.status_code == 200 and r["Cache-Control"] == "no-store"
    raw = re.search(r"jl_[A-Za-z0-9_-]{20,}", r.content.decode())
    assert raw is not None
    tok = ApiToken.objects.get(name="智能水表平台")
    assert tok.token_hash == hash_token(raw.group(0)) and tok.organization == world.orgs["water"]
    assert tok.role == "utility"
    assert raw.group(0) not in c.get("/tokens/").content.decode(), "a token is shown only once"
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw.group(0)}")
    assert api.get("/api/v1/instruments").status_code == 200
    c.post("/tokens/", {"action": "revoke", "token_id": tok.pk})
    assert api.get("/api/v1/instruments").status_code == 401


def test_cannot_see_or_revoke_another_organisations_token(world: World) -> None:
    other, _raw = api_token_create(actor=world.users["admin"], name="maker line", role="manufacturer",
                                   organization_id=world.orgs["maker"].pk)
    c = Client()
    c.force_login(world.users["water_user"])
    assert "maker line" not in c.get("/tokens/").content.decode()
    assert c.post("/tokens/", {"action": "revoke", "token_id": other.pk}).status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None


def test_people_without_an_organisation_cannot_manage_tokens(world: World) -> None:
    c = Client()
    c.force_login(world.users["citizen"])
    assert c.get("/tokens/").status_code == 403
    assert Client().get("/tokens/").status_code == 302
