"""Fixtures for the factory tests (see tests/factory/helpers.py)."""

from __future__ import annotations

import pytest

from jiliang.registry.models import InstrumentModel
from tests.factory.helpers import Fx, grant
from tests.world import World


@pytest.fixture
def fx(world: World) -> Fx:
    auth = grant(world)
    model = InstrumentModel.objects.get(maker=world.orgs["maker"], name="LXS-15")
    return Fx(world=world, auth=auth, model=model)
