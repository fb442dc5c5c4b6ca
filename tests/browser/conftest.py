"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright against pytest-django's live server.

Without Chromium the browser tests are skipped with the reason, unless JILIANG_REQUIRE_BROWSER=1, when
they fail instead (CI sets it so a missing browser cannot pass silently).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from tests.pages.data import Registry, build_registry

CHROMIUM = Path(os.environ.get("JILIANG_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _unavailable(reason: str) -> None:
    if os.environ.get("JILIANG_REQUIRE_BROWSER") == "1":
        pytest.fail(f"JILIANG_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per test module.  Module scope, not session: Playwright's sync API keeps an event loop
    running in this thread, and it must be gone before the rest of the suite runs its ORM calls."""
    if not CHROMIUM.exists():
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    # While Playwright's loop runs, Django would refuse the tests' own synchronous ORM calls (building data,
    # checking results, flushing the database): allow them while this module's browser is up, then restore.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def registry(transactional_db: None) -> Iterator[Registry]:
    cache.clear()
    yield build_registry()
    cache.clear()


@pytest.fixture
def page(chromium: Any, live_server: Any, registry: Registry) -> Iterator[Any]:
    """A fresh browser context (no cookies) with console errors and CSP violations collected."""
    context = chromium.new_context(base_url=live_server.url, locale="zh-CN", viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda msg: pg.console_errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: pg.console_errors.append(str(exc)))
    yield pg
    context.close()
