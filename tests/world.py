"""A small two-district world with known ownership, used as the oracle for scope tests.

Futian (福田区 440304) and Nanshan (南山区 440305) in Shenzhen (440300):

==========  ===================  =========  ==========================================
key         organisation         district   role in the world
==========  ===================  =========  ==========================================
reg         市场监督管理局        440300     regulator org (city level)
maker       制造公司              440305     manufacturer of every instrument
mo_f        福田市场开办方        440304     operates market place P_F
stall_f     福田摊主              440304     owns scale I_F at P_F
mo_n        南山市场开办方        440305     operates market place P_N
stall_n     南山摊主              440305     owns scale I_N at P_N
water       水务集团              440305     owns water meter I_W at residence P_R (operates it)
inst        福田检定所            440304     verification institute
==========  ===================  =========  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jiliang.accounts.models import User
from jiliang.accounts.roles import Role
from jiliang.engine.uscc import with_check_character
from jiliang.registry.models import (
    Instrument,
    InstrumentModel,
    Organization,
    OrganizationKind,
    Place,
)


def make_uscc(region: str, n: int, prefix: str = "91") -> str:
    """A valid credit code: prefix + region + 9-digit body, check character appended."""
    return with_check_character(f"{prefix}{region}{n:09d}")


@dataclass
class World:
    orgs: dict[str, Organization] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)
    instruments: dict[str, Instrument] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    verifications: dict[str, Any] = field(default_factory=dict)

    def ids(self, *keys: str) -> set[int]:
        return {self.instruments[k].pk for k in keys}

    def org_ids(self, *keys: str) -> set[int]:
        return {self.orgs[k].pk for k in keys}

    def place_ids(self, *keys: str) -> set[int]:
        return {self.places[k].pk for k in keys}


ORGS: list[tuple[str, str, str, list[str]]] = [
    ("reg", "深圳市市场监督管理局", "440300", ["regulator"]),
    ("maker", "深圳衡器制造有限公司", "440305", ["manufacturer"]),
    ("mo_f", "福田梅林市场管理有限公司", "440304", ["market_operator"]),
    ("stall_f", "福田区张三水产店", "440304", ["market_entity"]),
    ("mo_n", "南山南头市场管理有限公司", "440305", ["market_operator"]),
    ("stall_n", "南山区李四果蔬店", "440305", ["market_entity"]),
    ("water", "深圳市水务集团有限公司", "440305", ["utility"]),
    ("inst", "福田区计量检定所", "440304", ["verification_institute"]),
]

USERS: list[tuple[str, str, str | None, str | None]] = [
    # name, role, org key, region
    ("admin", Role.ADMIN, None, None),
    ("city_regulator", Role.REGULATOR, "reg", "440300"),
    ("futian_regulator", Role.REGULATOR, "reg", "440304"),
    ("futian_inspector", Role.INSPECTOR, "reg", "440304"),
    ("futian_institute", Role.INSTITUTE, "inst", "440304"),
    ("maker_user", Role.MANUFACTURER, "maker", None),
    ("water_user", Role.UTILITY, "water", None),
    ("stall_f_user", Role.MARKET_ENTITY, "stall_f", None),
    ("citizen", Role.PUBLIC, None, None),
]


def build_world() -> World:
    w = World()
    for i, (key, name, region, kinds) in enumerate(ORGS, start=1):
        org = Organization.objects.create(uscc=make_uscc(region, i), name=name, region_id=region,
                                          contact_phone="0755-8888000" + str(i))
        for k in kinds:
            OrganizationKind.objects.create(organization=org, kind=k)
        w.orgs[key] = org
    w.places["P_F"] = Place.objects.create(key="MKT-F", name="梅林农贸市场", kind="market", region_id="440304",
                                           operator=w.orgs["mo_f"], address="福田区梅林路1号")
    w.places["P_N"] = Place.objects.create(key="MKT-N", name="南头农贸市场", kind="market", region_id="440305",
                                           operator=w.orgs["mo_n"])
    w.places["P_R"] = Place.objects.create(key="RES-N", name="南山花园", kind="residence", region_id="440305",
                                           operator=w.orgs["water"])
    scale_model = InstrumentModel.objects.create(maker=w.orgs["maker"], name="ACS-15", instrument_type_id="scale",
                                                 accuracy_class="III", params={"e_g": 5, "max_g": 15000})
    water_model = InstrumentModel.objects.create(maker=w.orgs["maker"], name="LXS-15", instrument_type_id="water_meter",
                                                 accuracy_class="2", params={"Q3_m3h": 2.5, "R": 100})

    def inst(key: str, device: str, model: InstrumentModel, owner: str, place: str) -> None:
        p = w.places[place]
        w.instruments[key] = Instrument.objects.create(
            device_id=device, serial="S-" + device, model=model, instrument_type=model.instrument_type,
            maker=w.orgs["maker"], owner=w.orgs[owner], place=p, region_id=p.region_id, status="in_service",
            accuracy_class=model.accuracy_class, public_key_hex="ab" * 32)

    inst("I_F", "SC-F-1", scale_model, "stall_f", "P_F")
    inst("I_N", "SC-N-1", scale_model, "stall_n", "P_N")
    inst("I_W", "WM-N-1", water_model, "water", "P_R")
    from jiliang.verification.models import Verification

    for key, inst_key in (("V_F", "I_F"), ("V_N", "I_N"), ("V_W", "I_W")):
        w.verifications[key] = Verification.objects.create(
            instrument=w.instruments[inst_key], kind="periodic", date="2025-06-01", institution=w.orgs["inst"],
            points=[], results=[], conforming=True)
    for name, role, org, region in USERS:
        u = User(username=name, role=role, organization=w.orgs[org] if org else None, region_id=region,
                 is_superuser=role == Role.ADMIN, is_staff=role == Role.ADMIN)
        u.set_password("correct horse battery")
        u.save()
        w.users[name] = u
    return w


def expected_visibility(w: World) -> dict[str, dict[str, Any]]:
    """What each user must see, written out by hand (not derived from the policy under test)."""
    all_v = {v.pk for v in w.verifications.values()}
    v_f, v_w = {w.verifications["V_F"].pk}, {w.verifications["V_W"].pk}
    all_i = w.ids("I_F", "I_N", "I_W")
    all_o = {o.pk for o in w.orgs.values()}
    all_p = w.place_ids("P_F", "P_N", "P_R")
    futian_o = w.org_ids("mo_f", "stall_f", "inst")
    return {
        "admin": {"instruments": all_i, "orgs": all_o, "places": all_p, "verifications": all_v},
        "city_regulator": {"instruments": all_i, "orgs": all_o, "places": all_p, "verifications": all_v},
        "futian_regulator": {"instruments": w.ids("I_F"), "orgs": futian_o, "places": w.place_ids("P_F"),
                             "verifications": v_f},
        "futian_inspector": {"instruments": w.ids("I_F"), "orgs": futian_o, "places": w.place_ids("P_F"),
                             "verifications": v_f},
        # the institute performed all three verifications, so it sees them all
        "futian_institute": {"instruments": w.ids("I_F"), "orgs": futian_o, "places": w.place_ids("P_F"),
                             "verifications": all_v},
        "maker_user": {"instruments": all_i, "orgs": w.org_ids("maker"), "places": set(), "verifications": all_v},
        "water_user": {"instruments": w.ids("I_W"), "orgs": w.org_ids("water"), "places": w.place_ids("P_R"),
                       "verifications": v_w},
        "stall_f_user": {"instruments": w.ids("I_F"), "orgs": w.org_ids("stall_f"), "places": w.place_ids("P_F"),
                         "verifications": v_f},
        "citizen": {"instruments": set(), "orgs": set(), "places": set(), "verifications": set()},
    }
