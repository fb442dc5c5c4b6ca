"""Fixtures for the page tests: a clean throttle cache and a known registry (the fast password hasher is
set for every test by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from tests.pages.data import Registry, build_registry


@pytest.fixture(autouse=True)
def _clean_throttle_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def registry(db: None) -> Registry:
    return build_registry()
