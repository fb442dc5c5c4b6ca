"""The stored credit configuration (信用评价配置): validation naming the field, who may change it, the change
log, regrade with the stored version, and plan shares defaulting to it."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from jiliang.core.errors import JiliangError, PermissionDenied
from jiliang.core.models import ChangeLog
from jiliang.engine.credit import DEFAULT_EVENTS, CreditConfig
from jiliang.supervision.models import CreditConfigVersion, CreditGrade, CreditRegradeRun
from jiliang.supervision.services import (
    credit_config_update,
    credit_event_record,
    credit_regrade,
    current_credit_config,
    plan_create,
)
from tests.world import World

pytestmark = pytest.mark.django_db
TODAY = dt.date.today()


def _cfg(**changes: Any) -> dict[str, Any]:
    data = CreditConfig.default().as_mapping()
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return data


def _fields(exc: pytest.ExceptionInfo[JiliangError]) -> dict[str, str]:
    return {p.field: p.reason for p in exc.value.details}


def test_defaults_are_version_0_until_a_change(world: World) -> None:
    version, cfg = current_credit_config()
    assert version == 0 and cfg == CreditConfig.default()
    assert cfg.shares == {"A": 0.05, "B": 0.20, "C": 0.60, "D": 1.00}


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"thresholds__B": 95.0}, "thresholds.B", "strictly lower"),
    ({"thresholds__C": 75.0}, "thresholds.C", "strictly lower"),
    ({"events__alert_confirmed__half_life_days": 0}, "events.alert_confirmed.half_life_days", "greater than 0"),
    ({"events__alert_confirmed__half_life_days": -3}, "events.alert_confirmed.half_life_days", "greater than 0"),
    ({"events__case_penalty__weight": float("nan")}, "events.case_penalty.weight", "finite"),
    ({"events__case_penalty__weight": float("inf")}, "events.case_penalty.weight", "finite"),
    ({"events__case_penalty__weight": -500}, "events.case_penalty.weight", "between -100 and 100"),
    ({"events__case_penalty__weight": "heavy"}, "events.case_penalty.weight", "number"),
    ({"clamp": [50, 40]}, "clamp.high", "greater than clamp.low"),
    ({"base": 120}, "base", "within the clamp bounds"),
    ({"shares__B": 1.5}, "shares.B", "between 0 and 1"),
    ({"shares__D": 0.01}, "shares.D", "not be lower than shares.C"),
])
def test_invalid_configuration_names_the_field(world: World, changes: dict[str, Any], field: str,
                                               words: str) -> None:
    with pytest.raises(JiliangError) as exc:
        credit_config_update(actor=world.users["admin"], config=_cfg(**changes))
    assert exc.value.code == "validation_failed"
    assert field in _fields(exc) and words in _fields(exc)[field], _fields(exc)
    assert not CreditConfigVersion.objects.exists()


def test_every_event_kind_must_be_configured_and_no_other(world: World) -> None:
    data = _cfg()
    del data["events"]["case_penalty"]
    data["events"]["bribery"] = {"weight": -10, "half_life_days": 100}
    with pytest.raises(JiliangError) as exc:
        credit_config_update(actor=world.users["admin"], config=data)
    assert set(_fields(exc)) == {"events.case_penalty", "events.bribery"}


def test_all_problems_are_reported_at_once(world: World) -> None:
    with pytest.raises(JiliangError) as exc:
        credit_config_update(actor=world.users["admin"], config=_cfg(thresholds__B=95.0, base=-1, shares__A=2))
    assert {"thresholds.B", "base", "shares.A"} <= set(_fields(exc))


@pytest.mark.parametrize("who", ["futian_regulator", "futian_inspector", "stall_f_user", "citizen", "water_user"])
def test_only_admin_and_city_regulator_change_it(world: World, who: str) -> None:
    with pytest.raises(PermissionDenied):
        credit_config_update(actor=world.users[who], config=_cfg(base=70.0))
    assert not CreditConfigVersion.objects.exists()


def test_a_change_is_a_new_version_logged_with_before_and_after(world: World) -> None:
    v1 = credit_config_update(actor=world.users["city_regulator"], config=_cfg(base=70.0), note="更严格")
    assert v1.version == 1 and v1.config["base"] == 70.0 and v1.created_by == "city_regulator"
    entry = ChangeLog.objects.get(model="creditconfigversion", object_id=str(v1.pk))
    assert entry.before["version"] == 0 and entry.before["config"]["base"] == 80.0
    assert entry.after["config"]["base"] == 70.0 and entry.actor_label == "city_regulator"
    v2 = credit_config_update(actor=world.users["admin"], config=_cfg(base=72.0))
    assert v2.version == 2
    entry2 = ChangeLog.objects.get(model="creditconfigversion", object_id=str(v2.pk))
    assert entry2.before["version"] == 1 and entry2.before["config"]["base"] == 70.0
    # the same values again store nothing
    assert credit_config_update(actor=world.users["admin"], config=_cfg(base=72.0)).pk == v2.pk
    assert CreditConfigVersion.objects.count() == 2
    assert current_credit_config() == (2, CreditConfig.from_mapping(v2.config))


def test_regrade_uses_the_stored_configuration_and_records_the_version(world: World) -> None:
    admin = world.users["admin"]
    stall = world.orgs["stall_f"].pk
    credit_event_record(actor=admin, entity_id=stall, kind="spot_check_failed", occurred_on=TODAY, source="t:1")
    credit_regrade(actor=admin, today=TODAY)
    g = CreditGrade.objects.get(entity_id=stall)
    assert (g.grade, g.score, g.config_version) == ("C", 65.0, 0)  # 80 - 15
    run = CreditRegradeRun.objects.get()
    assert run.config_version == 0 and run.as_of == TODAY and run.events == 1 and run.config["base"] == 80.0
    assert ChangeLog.objects.filter(model="creditregraderun", object_id=str(run.pk), action="create").exists()

    weights = copy.deepcopy(_cfg())
    weights["events"]["spot_check_failed"]["weight"] = -25.0  # a heavier penalty: 80 - 25 = 55 -> D
    v = credit_config_update(actor=admin, config=weights)
    report = credit_regrade(actor=admin, today=TODAY)
    g.refresh_from_db()
    assert (g.grade, g.score, g.config_version) == ("D", 55.0, v.version)
    assert report.config_version == v.version and report.changed == 1
    entry = ChangeLog.objects.filter(model="creditgrade", object_id=str(g.pk), action="update").latest("id")
    assert entry.before["grade"] == "C" and entry.after["grade"] == "D"
    assert entry.after["config_version"] == v.version and entry.before["config_version"] == 0
    run = CreditRegradeRun.objects.order_by("-id").first()
    assert run is not None and run.config_version == v.version and run.config["events"]["spot_check_failed"][
        "weight"] == -25.0 and run.changed == 1


def test_thresholds_change_grades(world: World) -> None:
    admin = world.users["admin"]
    credit_regrade(actor=admin, today=TODAY)
    assert set(CreditGrade.objects.values_list("grade", flat=True)) == {"B"}  # base 80, no events
    credit_config_update(actor=admin, config=_cfg(thresholds={"A": 80.0, "B": 70.0, "C": 50.0}))
    credit_regrade(actor=admin, today=TODAY)
    assert set(CreditGrade.objects.values_list("grade", flat=True)) == {"A"}


def test_plan_shares_default_to_the_stored_configuration(world: World) -> None:
    admin = world.users["admin"]
    credit_config_update(actor=admin, config=_cfg(shares={"A": 0.02, "B": 0.1, "C": 0.3, "D": 0.8}))
    plan = plan_create(actor=admin, name="p", region_code="440304", period_start=TODAY, period_end=TODAY,
                       instrument_types=["scale"])
    assert plan.shares == {"A": 0.02, "B": 0.1, "C": 0.3, "D": 0.8}


def test_kinds_are_the_models_kinds() -> None:
    assert list(CreditConfig.default().events) == list(DEFAULT_EVENTS)
