"""The credit pages: configuration (信用评价配置) view and edit, and the explanation (信用档案说明) per entity
with its scope (regulators of the region and the entity itself, nobody else)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from jiliang.supervision.models import CreditConfigVersion
from jiliang.supervision.services import credit_event_record, credit_regrade
from tests.world import World

pytestmark = pytest.mark.django_db
TODAY = dt.date.today()


def _client(world: World, name: str) -> Client:
    c = Client()
    c.force_login(world.users[name])
    return c


def _form(**changes: object) -> dict[str, object]:
    from jiliang.engine.credit import CreditConfig

    cfg = CreditConfig.default()
    data: dict[str, object] = {"base": cfg.base, "clamp_low": 0, "clamp_high": 100, "threshold_A": 90,
                               "threshold_B": 75, "threshold_C": 60, "note": "",
                               **{f"share_{g}": s * 100 for g, s in cfg.shares.items()}}
    for k, (w, hl) in cfg.events.items():
        data[f"weight_{k}"], data[f"half_life_{k}"] = w, hl
    data.update(changes)
    return data


def test_config_page_shows_the_defaults_and_only_editors_get_the_form(world: World) -> None:
    url = reverse("supervision:credit_config")
    r = _client(world, "stall_f_user").get(url)
    body = r.content.decode()
    assert r.status_code == 200 and "信用评价配置" in body and "内置默认值" in body and 'id="config-form"' not in body
    assert "A ≥ 90" in body and "spot_check_failed" in body
    for name in ("admin", "city_regulator"):
        assert 'id="config-form"' in _client(world, name).get(url).content.decode(), name
    assert 'id="config-form"' not in _client(world, "futian_regulator").get(url).content.decode()
    assert _client(world, "futian_regulator").post(url, _form(base=70)).status_code == 403
    assert Client().get(url).status_code == 302  # sign in first


def test_config_edit_saves_a_version_and_errors_name_the_field(world: World) -> None:
    url = reverse("supervision:credit_config")
    c = _client(world, "city_regulator")
    r = c.post(url, _form(threshold_B=95))
    assert r.status_code == 200 and "未能保存" in r.content.decode() and "strictly lower" in r.content.decode()
    assert not CreditConfigVersion.objects.exists()
    r = c.post(url, _form(weight_spot_check_failed=-25, note="加重"), follow=True)
    assert r.status_code == 200 and "版本 1" in r.content.decode()
    assert CreditConfigVersion.objects.get().config["events"]["spot_check_failed"]["weight"] == -25


def test_explanation_lists_every_event_the_sum_and_the_grade(world: World) -> None:
    stall = world.orgs["stall_f"]
    admin = world.users["admin"]
    credit_event_record(actor=admin, entity_id=stall.pk, kind="spot_check_failed",
                        occurred_on=TODAY - dt.timedelta(days=365), source="task:9")
    credit_event_record(actor=admin, entity_id=stall.pk, kind="commitment_signed", occurred_on=TODAY, source="c:1")
    credit_regrade(actor=admin)
    r = _client(world, "futian_regulator").get(reverse("supervision:credit_explanation", args=[stall.pk]))
    body = r.content.decode()
    assert r.status_code == 200 and "信用档案说明" in body and stall.name in body
    assert "task:9" in body and "抽查不合格" in body and "签署诚信计量承诺" in body
    assert "-7.50" in body and "5.00" in body  # -15 halved after one half-life; +5 today
    assert 'id="credit-score">77.50' in body and 'id="credit-grade-text">B' in body  # 80 - 7.5 + 5
    assert "A ≥ 90" in body and "C ≥ 60" in body and "365" in body


@pytest.mark.parametrize(("name", "status"), [
    ("admin", 200), ("city_regulator", 200), ("futian_regulator", 200), ("stall_f_user", 200),
    ("futian_inspector", 404), ("futian_institute", 404), ("maker_user", 404), ("water_user", 404),
    ("citizen", 404),
])
def test_explanation_scope(world: World, name: str, status: int) -> None:
    url = reverse("supervision:credit_explanation", args=[world.orgs["stall_f"].pk])
    assert _client(world, name).get(url).status_code == status


def test_explanation_of_another_district_is_hidden(world: World) -> None:
    url = reverse("supervision:credit_explanation", args=[world.orgs["stall_n"].pk])
    assert _client(world, "futian_regulator").get(url).status_code == 404
    assert _client(world, "stall_f_user").get(url).status_code == 404
    assert _client(world, "city_regulator").get(url).status_code == 200
