"""The simulated city (模拟城市) and ``jiliang demo``: determinism, valid rows, counts, and a real build."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from jiliang.engine.uscc import validate_uscc
from jiliang.registry.catalogue import catalogue_entries
from jiliang.simulation.city import (
    DEMO_PASSWORD,
    DISTRICTS,
    INSTRUMENT_COLUMNS,
    LAT_RANGE,
    LON_RANGE,
    ORGANIZATION_COLUMNS,
    PLACE_COLUMNS,
    SCALES,
    City,
    apportion,
    generate_city,
)

SEED = 20261123
SMALL_COUNTS = {
    "place:market": 3, "place:charging_station": 3, "place:fuel_station": 2, "place:residence": 12,
    "type:scale": 90, "type:fuel_dispenser": 16, "type:water_meter": 120, "type:gas_meter": 72,
    "org:manufacturer": 20, "org:verification_institute": 5, "org:regulator": 4, "org:utility": 2,
    "org:charging_operator": 2, "org:fuel_retailer": 2, "org:market_operator": 3,
}
ROLES = ("admin", "regulator", "inspector", "institute", "manufacturer", "utility", "market_entity")


@pytest.fixture(scope="module")
def small() -> City:
    return generate_city("small", SEED)


@pytest.fixture(scope="module")
def city() -> City:
    return generate_city("city", SEED)


# ------------------------------------------------------------------------------------------ pure generator

def test_same_seed_gives_identical_rows() -> None:
    a, b = generate_city("small", 7), generate_city("small", 7)
    assert a == b
    assert generate_city("small", 8).instruments != a.instruments


def test_the_day_it_is_seen_from_moves_dates_only() -> None:
    a = generate_city("small", SEED, dt.date(2026, 6, 30))
    b = generate_city("small", SEED, dt.date(2027, 3, 1))
    assert a.organizations == b.organizations
    assert a.places == b.places
    strip = [{k: v for k, v in r.items() if k not in ("install_date", "serial")} for r in a.instruments]
    assert strip == [{k: v for k, v in r.items() if k not in ("install_date", "serial")} for r in b.instruments]


def test_small_counts(small: City) -> None:
    counts = small.counts()
    for key, expected in SMALL_COUNTS.items():
        assert counts[key] == expected, key
    assert counts["type:ev_charger_ac"] + counts["type:ev_charger_dc"] == 24
    assert counts["instruments"] == SCALES["small"].instruments == 322
    assert counts["places"] == 20


def test_city_scale_meets_the_issue(city: City) -> None:
    counts = city.counts()
    assert len({p["region_code"] for p in city.places}) >= 6
    assert counts["place:market"] == 40 and counts["type:scale"] == 4000
    assert counts["place:charging_station"] == 150
    assert counts["type:ev_charger_ac"] + counts["type:ev_charger_dc"] == 1500
    assert counts["type:ev_charger_ac"] > 100 and counts["type:ev_charger_dc"] > 100
    assert counts["place:fuel_station"] == 60 and counts["type:fuel_dispenser"] == 600
    assert counts["type:water_meter"] == 50_000 and counts["type:gas_meter"] == 30_000
    assert counts["place:residence"] == 2000
    assert counts["org:manufacturer"] == 20 and counts["org:verification_institute"] == 5
    stallholders = [o for o in city.organizations if o["uscc"].startswith("92")]
    assert len(stallholders) > 1000 and all(o["kinds"] == "market_entity" for o in stallholders)
    assert SCALES["large"].instruments == 3 * SCALES["city"].instruments


def test_columns_are_spec_3_5(small: City) -> None:
    assert all(tuple(r) == ORGANIZATION_COLUMNS for r in small.organizations)
    assert all(tuple(r) == PLACE_COLUMNS for r in small.places)
    assert all(tuple(r) == INSTRUMENT_COLUMNS for r in small.instruments)
    assert all(isinstance(v, str) for r in small.instruments for v in r.values())


def test_every_credit_code_is_valid_unique_and_regional(city: City) -> None:
    codes = [o["uscc"] for o in city.organizations]
    assert len(codes) == len(set(codes))
    for o in city.organizations:
        res = validate_uscc(o["uscc"])
        assert res.ok, (o, res.message_en)
        assert o["uscc"][2:8] == o["region_code"]
    known = set(codes)
    assert {i["maker_uscc"] for i in city.instruments} <= known
    assert {i["owner_uscc"] for i in city.instruments} <= known
    assert {p["operator_uscc"] for p in city.places} <= known


def test_rows_are_plausible(city: City) -> None:
    types = {e["key"]: e for e in catalogue_entries()}
    place_keys = {p["key"]: p for p in city.places}
    assert len(place_keys) == len(city.places)
    assert len({i["device_id"] for i in city.instruments}) == len(city.instruments)
    assert len({(i["maker_uscc"], i["serial"]) for i in city.instruments}) == len(city.instruments)
    for p in city.places:
        assert LAT_RANGE[0] <= float(p["lat"]) <= LAT_RANGE[1]
        assert LON_RANGE[0] <= float(p["lon"]) <= LON_RANGE[1]
        assert p["region_code"] in DISTRICTS
    for i in city.instruments:
        assert i["accuracy_class"] in types[i["instrument_type"]]["accuracy_classes"]
        assert dt.date.fromisoformat(i["install_date"]) < city.as_of
        assert i["device_id"].split("-")[1] == place_keys[i["place_key"]]["region_code"]
        if i["params"]:
            assert set(json.loads(i["params"])) <= set(types[i["instrument_type"]]["params"])
        assert bool(i["tank"]) == (i["instrument_type"] == "fuel_dispenser")
        assert (i["instrument_type"] == "scale") <= bool(i["sw_id"] and i["sw_hash"])
    tanks = Counter(i["tank"] for i in city.instruments if i["tank"])
    assert set(tanks) <= {"T1", "T2", "T3", "T4"}
    statuses = Counter(i["status"] for i in city.instruments)
    assert statuses["in_service"] > 0.95 * len(city.instruments)


def test_demo_users_cover_every_role(small: City) -> None:
    assert {u.role for u in small.users} == set(ROLES)
    by_name = {u.username: u for u in small.users}
    assert by_name["city_regulator"].region_code == "440300"
    assert by_name["futian_regulator"].region_code == "440304"
    codes = {o["uscc"]: o for o in small.organizations}
    for u in small.users:
        if u.role in ("manufacturer", "utility", "market_entity", "institute"):
            assert u.organization_uscc in codes, u.username


def test_apportion() -> None:
    assert apportion(10, [1, 1, 2]) == [3, 2, 5]
    assert sum(apportion(4000, [0.7, 1.3, 1.0, 0.9], minimum=5)) == 4000
    with pytest.raises(ValueError, match="at least"):
        apportion(2, [1, 1, 1], minimum=1)


# ---------------------------------------------------------------------------------------- build into the DB

@pytest.mark.django_db(transaction=False)
def test_build_demo_small_imports_every_row(small: City) -> None:
    from django.db.models import Count

    from jiliang.accounts.models import User
    from jiliang.core.models import ChangeLog
    from jiliang.registry.models import Instrument, Organization, Place
    from jiliang.simulation.demo import build_demo

    summary = build_demo(scale="small", seed=SEED, fresh=True, progress=False)
    # The same generator seen from today: identical counts and identities.
    assert summary.instrument_total == len(small.instruments)
    from jiliang.factory.models import Authorization, FactoryUnit
    from jiliang.simulation.factory import FactorySpec
    from jiliang.supervision.models import CreditGrade
    from jiliang.verification.models import Reminder

    # the city's organisations plus the simulated water-meter manufacturers of the factory demo (二检合一)
    assert Organization.objects.count() == len(small.organizations) + FactorySpec().manufacturers
    assert Authorization.objects.filter(status="granted").count() == FactorySpec().manufacturers
    assert FactoryUnit.objects.count() > 0 and CreditGrade.objects.exists() and Reminder.objects.exists()
    assert Place.objects.count() == len(small.places)
    by_type = dict(Instrument.objects.values_list("instrument_type").annotate(n=Count("id")).order_by())
    assert by_type == {k.removeprefix("type:"): v for k, v in small.counts().items() if k.startswith("type:")}
    assert set(Instrument.objects.values_list("device_id", flat=True)) == {i["device_id"] for i in small.instruments}
    assert not Instrument.objects.exclude(region__level="district").exists()
    logged = ChangeLog.objects.filter(model="instrument", action="import")  # one entry per block of rows
    assert sum(e.after["count"] for e in logged) == len(small.instruments)

    users = {u.username: u for u in User.objects.all()}
    assert {u.role for u in users.values()} == set(ROLES)
    assert users["admin"].is_superuser
    assert users["futian_regulator"].check_password(DEMO_PASSWORD)
    futian = Instrument.objects.restrict(users["futian_regulator"])
    assert futian.exists() and not futian.exclude(region_id="440304").exists()
    assert Instrument.objects.restrict(users["city_regulator"]).count() == len(small.instruments)
    mine = Instrument.objects.restrict(users["market_operator"])
    assert mine.exists() and set(mine.values_list("instrument_type", flat=True)) == {"scale"}
    assert set(Instrument.objects.restrict(users["water_utility"]).values_list("instrument_type", flat=True)) == {
        "water_meter"}

    text = summary.describe(host="0.0.0.0", port=8123)  # noqa: S104 (display only)
    assert "http://127.0.0.1:8123/" in text and DEMO_PASSWORD in text
    assert all(name in text for name in users)


@pytest.mark.django_db(transaction=False)
def test_fresh_rebuild_resets_and_keep_adds_nothing() -> None:
    from jiliang.core.models import ChangeLog
    from jiliang.registry.models import Instrument
    from jiliang.simulation.demo import build_demo

    first = build_demo(scale="small", seed=SEED, fresh=True, progress=False)
    again = build_demo(scale="small", seed=SEED, fresh=True, progress=False)
    assert again.instrument_total == first.instrument_total == Instrument.objects.count()
    assert sum(e.after["count"] for e in ChangeLog.objects.filter(model="instrument")) == first.instrument_total
    kept = build_demo(scale="small", seed=SEED, fresh=False, progress=False)
    assert kept.created == {"organizations": 0, "places": 0, "instruments": 0, "verifications": 0, "users": 0}
    assert Instrument.objects.count() == first.instrument_total


@pytest.mark.django_db
def test_demo_has_a_verification_history_with_due_and_failed_instruments() -> None:
    import datetime as dt

    from jiliang.registry.models import Instrument
    from jiliang.simulation.demo import build_demo
    from jiliang.verification.models import Verification

    summary = build_demo(scale="small", seed=SEED, fresh=True, progress=False, as_of=dt.date(2026, 11, 23))
    assert Verification.objects.count() == summary.instrument_total
    assert Instrument.objects.filter(valid_until__isnull=False).count() > summary.instrument_total * 0.9
    assert 0 < Verification.objects.filter(conforming=False).count() < summary.instrument_total * 0.06
    assert Instrument.objects.filter(valid_until__lt=dt.date(2026, 11, 23)).exists()  # some are overdue
