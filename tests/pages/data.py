"""A small, known registry for page tests, built through the real importers and services.

Districts: 福田 440304 (two markets' worth of scales and a water meter past its service life) and
罗湖 440303 (one scale).  Users cover the admin, a city and a district regulator, a market entity and a
signed-in member of the public who sees nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from jiliang.accounts.models import SystemPrincipal, User
from jiliang.accounts.services import user_create
from jiliang.engine.uscc import with_check_character
from jiliang.registry.importing import import_instruments, import_organizations, import_places
from jiliang.registry.models import Instrument, Organization
from jiliang.registry.tabular import Table

PASSWORD = "correct-horse-battery"
FUTIAN = "440304"
LUOHU = "440303"
PRIVATE_PHONE = "0755-88886666"
PRIVATE_KEY_HEX = "04a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6"
SW_HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def uscc(region: str, serial: str) -> str:
    """A valid Unified Social Credit Code for a region and a 9-character body."""
    return with_check_character(f"91{region}{serial}")


def _table(rows: list[dict[str, Any]]) -> Table:
    columns = list(rows[0])
    return Table(columns=columns, rows=[(i + 2, {c: str(r.get(c, "")) for c in columns}) for i, r in enumerate(rows)])


@dataclass
class Registry:
    """What a test needs to refer to."""

    maker: Organization
    market_ft: Organization
    market_lh: Organization
    utility_ft: Organization
    scale_ft: Instrument
    scale_ft_suspended: Instrument
    water_ft: Instrument
    scale_lh: Instrument
    users: dict[str, User]


MAKER = uscc("440305", "MA5F00001")
MARKET_FT = uscc(FUTIAN, "MA5F00002")
MARKET_LH = uscc(LUOHU, "MA5F00003")
UTILITY_FT = uscc(FUTIAN, "MA5F00004")


def build_registry(extra_scales: int = 0) -> Registry:
    """Create the organisations, places, instruments and users.  ``extra_scales`` adds that many more
    scales in 福田 (for query-count and pagination tests)."""
    actor = SystemPrincipal("test:setup")
    import_organizations(table=_table([
        {"uscc": MAKER, "name": "深圳衡准衡器有限公司", "kinds": "manufacturer", "region_code": "440305",
         "address": "南山区科技园", "contact_phone": "0755-26660000"},
        {"uscc": MARKET_FT, "name": "福田农产品市场管理有限公司", "kinds": "market_operator;market_entity",
         "region_code": FUTIAN, "address": "福田区福华路1号", "contact_phone": PRIVATE_PHONE},
        {"uscc": MARKET_LH, "name": "罗湖东门市场经营部", "kinds": "market_entity", "region_code": LUOHU,
         "address": "罗湖区东门路9号", "contact_phone": "0755-22220000"},
        {"uscc": UTILITY_FT, "name": "深圳福田水务有限公司", "kinds": "utility", "region_code": FUTIAN,
         "address": "", "contact_phone": ""},
    ]), actor=actor)
    import_places(table=_table([
        {"key": "FT-MKT-1", "name": "福华农贸市场", "kind": "market", "region_code": FUTIAN,
         "operator_uscc": MARKET_FT, "address": "福田区福华路1号", "lat": "22.54", "lon": "114.05"},
        {"key": "LH-MKT-1", "name": "东门农贸市场", "kind": "market", "region_code": LUOHU,
         "operator_uscc": MARKET_LH, "address": "罗湖区东门路9号", "lat": "", "lon": ""},
        {"key": "FT-RES-1", "name": "景田小区 3 栋", "kind": "residence", "region_code": FUTIAN,
         "operator_uscc": UTILITY_FT, "address": "福田区景田路", "lat": "", "lon": ""},
    ]), actor=actor)
    base = {"instrument_type": "scale", "maker_uscc": MAKER, "model": "ACS-15", "accuracy_class": "III",
            "params": '{"e_g": 5, "max_g": 15000}', "install_date": "2024-03-01", "sw_id": "", "sw_hash": "",
            "public_key_hex": ""}
    past_life = (dt.date.today() - dt.timedelta(days=7 * 366)).isoformat()  # beyond a water meter's 6 years
    rows = [
        {**base, "device_id": "SC-FT-0001", "serial": "S0001", "owner_uscc": MARKET_FT, "place_key": "FT-MKT-1",
         "status": "in_service", "sw_id": "FW 2.1", "sw_hash": SW_HASH, "public_key_hex": PRIVATE_KEY_HEX},
        {**base, "device_id": "SC-FT-0002", "serial": "S0002", "owner_uscc": MARKET_FT, "place_key": "FT-MKT-1",
         "status": "suspended"},
        {**base, "device_id": "WM-FT-0001", "serial": "W0001", "owner_uscc": UTILITY_FT, "place_key": "FT-RES-1",
         "status": "in_service", "instrument_type": "water_meter", "model": "LXS-15", "accuracy_class": "2",
         "params": '{"Q3_m3h": 2.5, "R": 100}', "install_date": past_life},
        {**base, "device_id": "SC-LH-0001", "serial": "S0100", "owner_uscc": MARKET_LH, "place_key": "LH-MKT-1",
         "status": "in_service"},
    ]
    rows += [{**base, "device_id": f"SC-FT-X{i:04d}", "serial": f"X{i:04d}", "owner_uscc": MARKET_FT,
              "place_key": "FT-MKT-1", "status": "in_service"} for i in range(extra_scales)]
    import_instruments(table=_table(rows), actor=actor)
    orgs = {o.uscc: o for o in Organization.objects.all()}
    users = {
        "admin": user_create(actor=actor, username="admin", password=PASSWORD, role="admin", is_superuser=True),
        "city": user_create(actor=actor, username="reg_city", password=PASSWORD, role="regulator",
                            region_code="440300"),
        "futian": user_create(actor=actor, username="reg_futian", password=PASSWORD, role="regulator",
                              region_code=FUTIAN),
        "market": user_create(actor=actor, username="market_ft", password=PASSWORD, role="market_entity",
                              organization_id=orgs[MARKET_FT].pk),
        "public": user_create(actor=actor, username="citizen", password=PASSWORD, role="public"),
    }
    inst = {i.device_id: i for i in Instrument.objects.all()}
    return Registry(maker=orgs[MAKER], market_ft=orgs[MARKET_FT], market_lh=orgs[MARKET_LH],
                    utility_ft=orgs[UTILITY_FT], scale_ft=inst["SC-FT-0001"], scale_ft_suspended=inst["SC-FT-0002"],
                    water_ft=inst["WM-FT-0001"], scale_lh=inst["SC-LH-0001"], users=users)
