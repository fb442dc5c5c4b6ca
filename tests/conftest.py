from __future__ import annotations

import pytest

from tests.world import World, build_world


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: pytest.FixtureRequest) -> None:
    # Argon2 is the production hasher (tested in tests/accounts); tests create many users, so use a fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]


@pytest.fixture
def world(db: None) -> World:
    return build_world()
