"""Every bulk-import kind (SPEC 3.5) in one table, for the command line and the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def importers() -> dict[str, Callable[..., Any]]:
    from jiliang.registry.importing import IMPORTERS
    from jiliang.verification.importing import import_verifications

    return {**IMPORTERS, "verifications": import_verifications}


KINDS = ("organizations", "places", "instruments", "verifications")
