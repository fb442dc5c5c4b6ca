from __future__ import annotations

import pytest
from django.test import override_settings

from jiliang.accounts.models import ApiToken, User, hash_token
from jiliang.accounts.roles import Scope, region_prefix
from jiliang.accounts.services import api_token_authenticate, api_token_create, api_token_revoke, user_create
from jiliang.core.errors import PermissionDenied
from tests.world import World

pytestmark = pytest.mark.django_db


@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.Argon2PasswordHasher"])
def test_passwords_are_hashed_with_argon2(world: World) -> None:
    u = user_create(actor=None, username="新用户", password="a long passphrase 2026", role="public")
    assert u.password.startswith("argon2$")
    assert User.objects.get(pk=u.pk).check_password("a long passphrase 2026")


def test_tokens_are_stored_hashed_and_revocable(world: World) -> None:
    tok, raw = api_token_create(actor=world.users["water_user"], name="AMI", organization_id=world.orgs["water"].pk,
                                role="utility")
    stored = ApiToken.objects.get(pk=tok.pk)
    assert raw not in (stored.token_hash, stored.prefix) and stored.token_hash == hash_token(raw)
    assert api_token_authenticate(raw) is not None
    api_token_revoke(actor=world.users["water_user"], token_id=tok.pk)
    assert api_token_authenticate(raw) is None


def test_token_for_another_organisation_is_refused(world: World) -> None:
    with pytest.raises(PermissionDenied):
        api_token_create(actor=world.users["water_user"], name="x", organization_id=world.orgs["maker"].pk,
                         role="utility")
    with pytest.raises(PermissionDenied):
        api_token_create(actor=world.users["water_user"], name="x", organization_id=world.orgs["water"].pk,
                         role="regulator")


def test_regional_roles_need_a_region(world: World) -> None:
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="nowhere", role="regulator", organization=world.orgs["reg"])


def test_region_prefix_and_scope() -> None:
    assert region_prefix("440300") == "4403"
    assert region_prefix("440000") == "44"
    assert region_prefix("440304") == "440304"
    assert not Scope.of(None).authenticated
