"""The registry of API permission cases, shared by tests/api/test_permissions.py and tests/api/cases_*.py.

A domain adds its cases in its own module ``tests/api/cases_<domain>.py`` with ``@case(method, path)``;
``load_case_modules`` imports every such module so that the completeness test sees them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.test import Client

from tests.world import USERS, World

ALL_USERS = [u[0] for u in USERS]
CASES: dict[tuple[str, str], Callable[[World, dict[str, Client]], None]] = {}
# Operations that are public by design (no sign-in); their cases check the anonymous answer.
PUBLIC_OPERATIONS: set[tuple[str, str]] = set()


def case(method: str, path: str) -> Callable[[Callable[[World, dict[str, Client]], None]], Any]:
    def deco(fn: Callable[[World, dict[str, Client]], None]) -> Any:
        assert (method, path) not in CASES, f"two cases for {method.upper()} {path}"
        CASES[(method, path)] = fn
        return fn

    return deco


def ids(resp: Any) -> set[int]:
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["count"] == len(body["items"])
    return {row["id"] for row in body["items"]}


def load_case_modules() -> None:
    here = Path(__file__).parent
    for info in pkgutil.iter_modules([str(here)]):
        if info.name.startswith("cases_"):
            importlib.import_module(f"tests.api.{info.name}")
