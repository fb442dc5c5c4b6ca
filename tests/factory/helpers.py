"""Helpers for the factory tests (the ``fx`` fixture is in conftest): the permission world's manufacturer
("maker", 南山) granted a factory-verification authorization for DN15–DN40 water meters, with its
water-meter model LXS-15 (class 2, Q3 2.5 m³/h, R 100)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from jiliang.factory import services
from jiliang.factory.models import Authorization
from jiliang.registry.models import InstrumentModel
from tests.world import World

GRANTED_ON = dt.date(2025, 1, 6)
SCOPE = [{"instrument_type": "water_meter", "dn_min": 15, "dn_max": 40}]
CONDITIONS = {"standards": "计量标准考核证书 001", "environment": "恒温检定室", "registered_metrologists": "3 名",
              "management_system": "ISO 9001"}


@dataclass
class Fx:
    world: World
    auth: Authorization
    model: InstrumentModel

    @property
    def maker(self) -> Any:
        return self.world.orgs["maker"]

    def unit(self, serial_: str, **over: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "name": "饮用冷水水表", "model": "LXS-15", "size": "DN15", "serial": serial_, "accuracy_class": "2",
            "maker": self.maker.uscc, "production_date": "2025-03-01", "verification_date": "2025-03-02",
            "conclusion": "合格", "institution": "制造公司计量室", "batch": "B1",
            "points": [{"point": "Q1", "error_pct": 1.0}, {"point": "Q2", "error_pct": -0.5},
                       {"point": "Q3", "error_pct": 0.3}]}
        rec.update(over)
        return rec


def grant(world: World, org_key: str = "maker", scope: list[Any] | None = None) -> Authorization:
    admin = world.users["admin"]
    a = services.authorization_apply(actor=admin, manufacturer_id=world.orgs[org_key].pk, conditions=CONDITIONS,
                                     registered_metrologists=3, scope=scope or SCOPE, today=GRANTED_ON)
    services.authorization_transition(actor=admin, authorization_id=a.pk, event="assess", today=GRANTED_ON)
    return services.authorization_transition(actor=admin, authorization_id=a.pk, event="grant", today=GRANTED_ON)
