"""Load the simulated manufacturers (:mod:`jiliang.simulation.factory`) through the real services, for the
demo and for tests: ``build_factory_demo(actor=..., utility_uscc=...)``.

Each manufacturer is registered (if missing) with its models, applies for the authorization (DN15–DN40 cold
water meters), is assessed and granted, and uploads its units; the drifting manufacturer's batches then show
up in the batch statistics.  When a utility is given, the first batch of the first manufacturer is delivered
to it as a lot, and the regulator orders supervisory sampling of that lot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from jiliang.factory import services, upload
from jiliang.factory.models import Authorization, DeliveryLot, Sampling
from jiliang.registry.models import InstrumentModel, Organization, OrganizationKind
from jiliang.registry.services import organization_create
from jiliang.simulation.factory import FactorySpec, FactoryWorld, generate_factory

SCOPE = [{"instrument_type": "water_meter", "dn_min": 15, "dn_max": 40}]
CONDITIONS = {"standards": "水表检定装置 计量标准考核证书〔2025〕量标泰证字第001号",
              "environment": "检定区 120 m²，恒温 20±2 ℃", "registered_metrologists": "注册计量师 3 名",
              "management_system": "ISO 9001 / ISO 10012 认证，质量手册 QM-01", "self_declaration": "已签署"}


@dataclass
class FactoryDemo:
    world: FactoryWorld
    authorizations: dict[str, Authorization] = field(default_factory=dict)
    created_units: int = 0
    lot: DeliveryLot | None = None
    sampling: Sampling | None = None


def build_factory_demo(*, actor: Any, spec: FactorySpec | None = None, seed: int = 2025,
                       utility_uscc: str | None = None, grant_on: dt.date = dt.date(2025, 1, 6)) -> FactoryDemo:
    """Register, authorize and upload the simulated manufacturers; ``actor`` is an administrator (the demo
    acts for every party)."""
    w = generate_factory(spec or FactorySpec(), seed)
    demo = FactoryDemo(world=w)
    for m in w.manufacturers:
        org = Organization.objects.filter(uscc=m["uscc"]).first()
        if org is None:
            org = organization_create(actor=actor, values={"uscc": m["uscc"], "name": m["name"],
                                                           "kinds": ["manufacturer"], "region_code": m["region_code"]})
        elif not OrganizationKind.objects.filter(organization=org, kind="manufacturer").exists():
            OrganizationKind.objects.create(organization=org, kind="manufacturer")
        for mo in w.models:
            if mo["maker_uscc"] == m["uscc"]:
                InstrumentModel.objects.get_or_create(
                    maker=org, name=mo["name"], instrument_type_id=mo["instrument_type"],
                    accuracy_class=mo["accuracy_class"], defaults={"params": mo["params"]})
        a = Authorization.objects.filter(manufacturer=org).order_by("-id").first()
        if a is None:
            a = services.authorization_apply(actor=actor, manufacturer_id=org.pk, conditions=CONDITIONS,
                                             registered_metrologists=3, scope=SCOPE, today=grant_on)
            services.authorization_transition(actor=actor, authorization_id=a.pk, event="assess", today=grant_on)
            a = services.authorization_transition(actor=actor, authorization_id=a.pk, event="grant",
                                                  note="现场考核通过", today=grant_on)
        demo.authorizations[m["uscc"]] = a
    res = upload.upload_units(actor=actor, records=w.units, source="demo")
    demo.created_units = res.created
    if utility_uscc:
        utility = Organization.objects.get(uscc=utility_uscc)
        first = w.manufacturers[0]["uscc"]
        batch = w.units[0]["batch"]
        serials = [u["serial"] for u in w.units if u["maker"] == first and u["batch"] == batch
                   and u["conclusion"] == "合格"]
        maker = Organization.objects.get(uscc=first)
        lot_no = f"{batch}-L1"
        demo.lot = DeliveryLot.objects.filter(manufacturer=maker, lot_no=lot_no).first() or services.lot_deliver(
            actor=actor, manufacturer_id=maker.pk, utility_id=utility.pk, lot_no=lot_no, serials=serials)
        if demo.lot.status == "delivered":
            demo.sampling = services.sampling_open(actor=actor, lot_id=demo.lot.pk, seed=f"demo-{seed}")
    return demo
