"""Runs the inspection API's permission cases (tests/api/cases_inspection.py) for every role.

tests/api/test_permissions.py builds its per-role parametrisation from ``CASES`` before it loads the
``cases_*.py`` modules, so there only the anonymous check and the completeness check see these cases; this
module runs the per-role expectations themselves.
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.api import cases_inspection
from tests.api.permcases import CASES
from tests.world import World

pytestmark = pytest.mark.django_db

OPS = sorted(op for op, fn in CASES.items() if fn.__module__ == cases_inspection.__name__)


def test_every_inspection_operation_has_a_case() -> None:
    assert len(OPS) == 11


@pytest.fixture
def clients(world: World) -> dict[str, Client]:
    out = {}
    for name, user in world.users.items():
        cl = Client()
        cl.force_login(user)
        out[name] = cl
    return out


@pytest.mark.parametrize("op", OPS, ids=lambda op: f"{op[0].upper()} {op[1]}")
def test_inspection_operation_scope_for_every_role(op: tuple[str, str], world: World,
                                                   clients: dict[str, Client]) -> None:
    CASES[op](world, clients)
