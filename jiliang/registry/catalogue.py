"""The instrument-type catalogue shipped as package data (data/catalogue.yaml) and the region list."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def catalogue_entries() -> list[dict[str, Any]]:
    text = resources.files("jiliang.registry").joinpath("data/catalogue.yaml").read_text(encoding="utf-8")
    return list(yaml.safe_load(text)["types"])


@cache
def region_entries() -> list[dict[str, Any]]:
    text = resources.files("jiliang.registry").joinpath("data/regions.yaml").read_text(encoding="utf-8")
    return list(yaml.safe_load(text)["regions"])


TYPE_KEYS = tuple(e["key"] for e in catalogue_entries())


def sync_catalogue() -> None:
    """Create missing catalogue rows and regions.  Existing rows are left as an administrator set them,
    because low-confidence values (periods, service lives) are configurable defaults."""
    from jiliang.registry.models import InstrumentType, Region

    for e in catalogue_entries():
        InstrumentType.objects.get_or_create(
            key=e["key"],
            defaults={
                "name_zh": e["name_zh"], "name_en": e["name_en"], "regulation": e["regulation"],
                "oiml": e.get("oiml", ""), "accuracy_classes": e.get("accuracy_classes", []),
                "params_schema": e.get("params", {}), "verification_mode": e["verification_mode"],
                "period_months": e.get("period_months"), "service_life_years": e.get("service_life_years"),
                "note": e.get("note", ""), "source": e["source"], "confidence": e["confidence"],
            },
        )
    for r in region_entries():  # parents come first in the file
        Region.objects.get_or_create(
            code=r["code"],
            defaults={"name": r["name"], "name_en": r.get("name_en", ""), "level": r["level"],
                      "parent_id": r.get("parent")},
        )


def sync_after_migrate(sender: Any, **kwargs: Any) -> None:
    using = kwargs.get("using", "default")
    if using == "default":
        sync_catalogue()
