"""The naive way (逐条保存) the benchmarks compare against: one ORM object at a time.

``validated``: what a straightforward per-object service does for each row — look the foreign keys up
with ``.get()``, check the credit code, ``full_clean()`` (which also runs the uniqueness queries),
``save()`` and write the change-log row, each object in its own transaction (autocommit, as a request or
a per-row service call would).  This is the same work the bulk importer does (validate, write, log).

``bare``: the cheapest ORM loop there is — foreign keys resolved from dictionaries loaded once, no
validation, no change log, one ``save()`` per object in autocommit.  It shows how much of the gap is
the per-object round trips rather than the validation.

Used by ``bench/import_instruments.py`` and ``bench/demo_build.py``; needs ``django.setup()`` first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from django.db import transaction

from jiliang.core.changelog import log_change
from jiliang.core.errors import JiliangError
from jiliang.engine.uscc import validate_uscc
from jiliang.registry.models import Instrument, InstrumentModel, Organization, OrganizationKind, Place


def _checked_uscc(code: str) -> str:
    res = validate_uscc(code)
    if not res.ok:
        raise JiliangError(res.message_en, code="validation_failed")
    return code


def save_organization(row: dict[str, str], actor: Any) -> None:
    """One organisation (单位) and its kinds, validated, saved and logged in its own transaction."""
    with transaction.atomic():
        org = Organization(uscc=_checked_uscc(row["uscc"]), name=row["name"], region_id=row["region_code"],
                           address=row.get("address", ""), contact_phone=row.get("contact_phone", ""))
        org.full_clean()
        org.save()
        for kind in sorted({k.strip() for k in row["kinds"].split(";") if k.strip()}):
            ok = OrganizationKind(organization=org, kind=kind)
            ok.full_clean()
            ok.save()
        log_change(actor=actor, obj=org, action="create")


def save_place(row: dict[str, str], actor: Any) -> None:
    """One place (场所), validated, saved and logged in its own transaction."""
    with transaction.atomic():
        operator = Organization.objects.get(uscc=_checked_uscc(row["operator_uscc"]))
        place = Place(key=row["key"], name=row["name"], kind=row["kind"], region_id=row["region_code"],
                      address=row.get("address", ""), operator=operator,
                      lat=float(row["lat"]) if row.get("lat") else None,
                      lon=float(row["lon"]) if row.get("lon") else None)
        place.full_clean()
        place.save()
        log_change(actor=actor, obj=place, action="create")


def _fields(row: dict[str, str]) -> dict[str, Any]:
    return {
        "device_id": row["device_id"], "serial": row["serial"], "instrument_type_id": row["instrument_type"],
        "status": row["status"], "accuracy_class": row.get("accuracy_class", ""),
        "params": orjson.loads(row["params"]) if row.get("params") else {},
        "install_date": dt.date.fromisoformat(row["install_date"]) if row.get("install_date") else None,
        "tank": row.get("tank", ""), "sw_id": row.get("sw_id", ""), "sw_hash": row.get("sw_hash", ""),
        "public_key_hex": row.get("public_key_hex", ""),
    }


def save_instrument(row: dict[str, str], actor: Any) -> None:
    """One instrument (计量器具), validated, saved and logged in its own transaction."""
    with transaction.atomic():
        maker = Organization.objects.get(uscc=_checked_uscc(row["maker_uscc"]), kinds__kind="manufacturer")
        owner = Organization.objects.get(uscc=_checked_uscc(row["owner_uscc"]))
        place = Place.objects.get(key=row["place_key"]) if row.get("place_key") else None
        f = _fields(row)
        model, _ = InstrumentModel.objects.get_or_create(
            maker=maker, name=row["model"], instrument_type_id=f["instrument_type_id"],
            accuracy_class=f["accuracy_class"], defaults={"params": f["params"]})
        inst = Instrument(model=model, maker=maker, owner=owner, place=place,
                          region_id=place.region_id if place else owner.region_id, **f)
        inst.full_clean()
        inst.save()
        log_change(actor=actor, obj=inst, action="create")


class BareInstrumentSaver:
    """``Instrument(...).save()`` per row with foreign keys from dictionaries loaded once (no validation)."""

    def __init__(self) -> None:
        self.orgs: dict[str, tuple[int, str]] = {
            u: (i, r) for u, i, r in Organization.objects.values_list("uscc", "id", "region_id")}
        self.places: dict[str, tuple[int, str]] = {
            k: (i, r) for k, i, r in Place.objects.values_list("key", "id", "region_id")}
        self.models: dict[tuple[int, str, str, str], int] = {
            (m, n, t, c): i for i, m, n, t, c in
            InstrumentModel.objects.values_list("id", "maker_id", "name", "instrument_type_id", "accuracy_class")}

    def save(self, row: dict[str, str]) -> None:
        maker_id = self.orgs[row["maker_uscc"]][0]
        owner_id, owner_region = self.orgs[row["owner_uscc"]]
        place = self.places.get(row.get("place_key", ""))
        f = _fields(row)
        key = (maker_id, row["model"], f["instrument_type_id"], f["accuracy_class"])
        model_id = self.models.get(key)
        if model_id is None:
            model_id = InstrumentModel.objects.create(
                maker_id=maker_id, name=row["model"], instrument_type_id=f["instrument_type_id"],
                accuracy_class=f["accuracy_class"], params=f["params"]).pk
            self.models[key] = model_id
        Instrument(model_id=model_id, maker_id=maker_id, owner_id=owner_id, place_id=place[0] if place else None,
                   region_id=place[1] if place else owner_region, **f).save()
