"""Permission cases for the credit configuration API (信用评价配置): every signed-in person reads it (the score
is transparent); administrators and city regulators store a new version; nobody else."""

from __future__ import annotations

from django.test import Client

from jiliang.engine.credit import CreditConfig
from jiliang.supervision.models import CreditConfigVersion
from tests.api.permcases import ALL_USERS, case
from tests.world import World

CONFIG_EDITORS = {"admin", "city_regulator"}


@case("get", "/api/v1/credit/config")
def _credit_config(w: World, c: dict[str, Client]) -> None:
    for name in ALL_USERS:
        r = c[name].get("/api/v1/credit/config")
        assert r.status_code == 200, (name, r.content)
        body = r.json()
        assert body["version"] == 0 and body["config"]["thresholds"] == {"A": 90.0, "B": 75.0, "C": 60.0}
        assert body["may_change"] == (name in CONFIG_EDITORS), name


@case("put", "/api/v1/credit/config")
def _credit_config_put(w: World, c: dict[str, Client]) -> None:
    for n, name in enumerate(ALL_USERS):
        data = CreditConfig.default().as_mapping()
        data["base"] = 50.0 + n
        before = CreditConfigVersion.objects.count()
        r = c[name].put("/api/v1/credit/config", {"config": data, "note": name}, content_type="application/json")
        stored = CreditConfigVersion.objects.count() - before
        if name in CONFIG_EDITORS:
            assert r.status_code == 200 and r.json()["config"]["base"] == 50.0 + n and stored == 1, (name, r.content)
        else:
            assert r.status_code == 403 and stored == 0, (name, r.content)
    # an invalid configuration is refused with the field named
    data = CreditConfig.default().as_mapping()
    data["thresholds"] = {"A": 60.0, "B": 75.0, "C": 90.0}
    r = c["admin"].put("/api/v1/credit/config", {"config": data}, content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    assert {d["field"] for d in r.json()["error"]["details"]} >= {"thresholds.B"}
