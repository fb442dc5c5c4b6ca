"""The alert pages (预警, C4) through Django's test client: list and detail for each role, the decision form,
the evidence and the chart data, filters and counts, and query counts that do not grow with the alerts.

Alerts are made the way production makes them: telemetry through ``ingest_lines``, then ``run_detectors``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jiliang.core.errors import NotFound
from jiliang.core.models import ChangeLog
from jiliang.engine.detectors import REGISTRY
from jiliang.monitoring import selectors
from jiliang.monitoring.detection import run_detectors
from jiliang.monitoring.ingest import ingest_lines
from jiliang.monitoring.models import Alert, DetectorConfig
from jiliang.registry.models import Instrument, InstrumentModel, Place
from tests.world import World

pytestmark = pytest.mark.django_db

LIST = reverse("monitoring:alert_list")


def detail(alert: Alert) -> str:
    return reverse("monitoring:alert_detail", args=[alert.pk])


def menu(body: str) -> str:
    """The main menu's HTML."""
    start = body.index('class="mainnav"')
    return body[start:body.index("</nav>", start)]


def login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def txn(seq: int, amount: int, device: str = "SC-F-1", net_g: int = 1000, price: int = 1500) -> bytes:
    return json.dumps({"kind": "scale.txn", "device": device, "ts": f"2026-11-01T08:{seq:02d}:00+08:00", "seq": seq,
                       "net_g": net_g, "tare_g": 0, "unit_price_fen_per_kg": price, "amount_fen": amount}).encode()


def reading(seq: int, hour: int, register: float, flags: list[str] | None = None) -> bytes:
    day, hh = divmod(hour, 24)
    return json.dumps({"kind": "meter.reading", "device": "WM-N-1", "ts": f"2026-11-{1 + day:02d}T{hh:02d}:00:00+08:00",
                       "seq": seq, "register": register, "flags": flags or []}).encode()


@pytest.fixture
def scale_alert(world: World) -> Alert:
    """Futian stall's scale charges 16.00 元 for 1 kg at 15.00 元/kg once among ten honest sales."""
    lines = [txn(s, 1500) for s in range(1, 11)]
    lines[4] = txn(5, 1600)
    assert ingest_lines(lines, source="t").accepted == 10
    run_detectors()
    return Alert.objects.get(detector="scale.amount_mismatch")


@pytest.fixture
def meter_alert(world: World) -> Alert:
    """Nanshan water meter runs backwards once (100.500 → 100.200 m³) among steadily rising readings."""
    values = [100.0 + 0.1 * i for i in range(12)]
    values[6] = values[5] - 0.3
    assert ingest_lines([reading(i + 1, 2 * i, v) for i, v in enumerate(values)], source="t").accepted == 12
    run_detectors()
    return Alert.objects.get(detector="meter.reverse_flow")


# ------------------------------------------------------------------------------------------ rendering

def test_list_and_detail_render_for_a_regulator(client: Client, world: World, scale_alert: Alert,
                                                meter_alert: Alert) -> None:
    login(client, world.users["city_regulator"])
    response = client.get(LIST)
    assert response.status_code == 200
    body = response.content.decode()
    assert {r.alert.pk for r in response.context["rows"]} == {scale_alert.pk, meter_alert.pk}
    for text in ("计价金额与单价×重量不符", "表计倒转（逆流）", "SC-F-1", "WM-N-1", "福田区张三水产店",
                 "深圳市水务集团有限公司", "严重", "新预警"):
        assert text in body, text
    assert reverse("registry:instrument_detail", args=[scale_alert.device_id]) in body
    assert detail(scale_alert) in body
    assert "<script>" not in body and " onclick=" not in body
    # the menu offers the alerts page to regulators (and inspectors, below)
    assert f'href="{LIST}"' in menu(body)

    page = client.get(detail(scale_alert))
    assert page.status_code == 200
    html = page.content.decode()
    assert "计价金额与单价×重量不符" in html and "SC-F-1" in html
    assert 'id="decision-form"' in html and "csrfmiddlewaretoken" in html
    assert "<script>" not in html and " onclick=" not in html
    assert "alerts.js" in html and "echarts.min.js" in html


def test_a_district_regulator_sees_only_its_district(client: Client, world: World, scale_alert: Alert,
                                                     meter_alert: Alert) -> None:
    login(client, world.users["futian_regulator"])
    rows = client.get(LIST).context["rows"]
    assert [r.alert.pk for r in rows] == [scale_alert.pk]
    assert client.get(detail(meter_alert)).status_code == 404
    assert client.post(detail(meter_alert), {"status": "confirmed"}).status_code == 404
    assert Alert.objects.get(pk=meter_alert.pk).status == "new"


@pytest.mark.parametrize("who", ["stall_f_user", "maker_user", "water_user", "futian_institute", "citizen"])
def test_owners_makers_institutes_and_the_public_see_nothing(client: Client, world: World, scale_alert: Alert,
                                                             meter_alert: Alert, who: str) -> None:
    login(client, world.users[who])
    response = client.get(LIST)
    assert response.status_code == 200
    assert response.context["rows"] == []
    body = response.content.decode()
    assert 'id="alerts-empty"' in body and "没有符合条件的预警" in body
    assert "SC-F-1" not in body and "WM-N-1" not in body
    assert f'href="{LIST}"' not in menu(body), "the menu does not offer alerts to this role"
    for alert in (scale_alert, meter_alert):
        assert client.get(detail(alert)).status_code == 404
        assert client.post(detail(alert), {"status": "dismissed", "reason": "x"}).status_code == 404
        with pytest.raises(NotFound):
            selectors.alert_telemetry(principal=world.users[who], pk=alert.pk)
    assert set(Alert.objects.values_list("status", flat=True)) == {"new"}


def test_signed_out_visitors_are_sent_to_sign_in(client: Client, world: World, scale_alert: Alert) -> None:
    for url in (LIST, detail(scale_alert)):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
    assert client.post(detail(scale_alert), {"status": "confirmed"}).status_code == 302
    assert Alert.objects.get(pk=scale_alert.pk).status == "new"


def test_the_inspector_sees_but_cannot_decide(client: Client, world: World, scale_alert: Alert) -> None:
    login(client, world.users["futian_inspector"])
    listing = client.get(LIST)
    assert [r.alert.pk for r in listing.context["rows"]] == [scale_alert.pk]
    assert f'href="{LIST}"' in menu(listing.content.decode())
    page = client.get(detail(scale_alert))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="decision-form"' not in html and 'id="decision-readonly"' in html
    assert page.context["chart"] is not None
    for status in ("triaged", "confirmed", "dismissed"):
        assert client.post(detail(scale_alert), {"status": status, "reason": "现场核实"}).status_code == 403
    assert Alert.objects.get(pk=scale_alert.pk).status == "new"
    assert not ChangeLog.objects.filter(model="alert").exists()


# ------------------------------------------------------------------------------------------ decisions

def test_dismissing_without_a_reason_shows_the_error_and_changes_nothing(client: Client, world: World,
                                                                         scale_alert: Alert) -> None:
    login(client, world.users["futian_regulator"])
    response = client.post(detail(scale_alert), {"status": "dismissed", "reason": "   "})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="form-errors"' in html and "排除预警必须填写理由" in html
    assert Alert.objects.get(pk=scale_alert.pk).status == "new"
    assert not ChangeLog.objects.filter(model="alert").exists()
    # a status the lifecycle does not allow from here is refused by the form as well
    response = client.post(detail(scale_alert), {"status": "new"})
    assert response.status_code == 200 and response.context["form"].errors["status"]
    assert Alert.objects.get(pk=scale_alert.pk).status == "new"


def test_triage_then_confirm_with_message_and_history(client: Client, world: World, scale_alert: Alert) -> None:
    login(client, world.users["futian_regulator"])
    response = client.post(detail(scale_alert), {"status": "triaged", "reason": ""}, follow=True)
    assert response.redirect_chain == [(detail(scale_alert), 302)]
    assert "已更新为“已分派”" in response.content.decode()
    assert [v for v, _label in response.context["form"].fields["status"].choices] == ["confirmed", "dismissed"]
    response = client.post(detail(scale_alert), {"status": "confirmed", "reason": "复秤核实多收 1 元"}, follow=True)
    html = response.content.decode()
    a = Alert.objects.get(pk=scale_alert.pk)
    assert a.status == "confirmed" and a.decided_by == "futian_regulator" and a.decision_reason == "复秤核实多收 1 元"
    assert "已更新为“已确认”" in html and 'class="message message-success"' in html
    assert 'id="decision-form"' not in html and 'id="decision-closed"' in html
    history = response.context["history"]
    assert len(history) == 2 and history[0].actor == "futian_regulator"
    assert ("状态", "已分派", "已确认") in history[0].changes
    assert "已分派" in html and "复秤核实多收 1 元" in html
    # a closed alert takes no further decision
    response = client.post(detail(scale_alert), {"status": "dismissed", "reason": "x"}, follow=True)
    assert "该预警已处理完毕，不能再次处理。" in response.content.decode()
    assert Alert.objects.get(pk=scale_alert.pk).status == "confirmed"


def test_dismiss_with_a_reason(client: Client, world: World, meter_alert: Alert) -> None:
    login(client, world.users["city_regulator"])
    response = client.post(detail(meter_alert), {"status": "dismissed", "reason": "换表时读数回退，已核实"})
    assert response.status_code == 302
    a = Alert.objects.get(pk=meter_alert.pk)
    assert a.status == "dismissed" and a.decision_reason == "换表时读数回退，已核实"


# ------------------------------------------------------------------------------------ evidence, charts

def test_scale_evidence_and_chart_data(client: Client, world: World, scale_alert: Alert) -> None:
    login(client, world.users["futian_regulator"])
    page = client.get(detail(scale_alert))
    html = page.content.decode()
    evidence = page.context["evidence"]
    facts = dict(evidence.facts)
    assert facts["金额不符的交易"] == "1" and facts["分析的交易"] == "10" and facts["多收金额合计（元）"] == "1.00"
    [table] = evidence.tables
    assert table.rows == [["5", "1,000", "15.00", "16.00", "15.00", "1.00"]]
    assert "金额不符的交易（示例）" in html and "16.00" in html
    chart = page.context["chart"]
    names = [s["name"] for s in chart["series"]]
    assert names == ["应收金额", "收取金额", "金额不符", "差额（收取 − 应收）"]
    expected, charged, flagged, difference = (s["data"] for s in chart["series"])
    assert len(charged) == len(expected) == len(difference) == 10
    assert [p[1] for p in difference] == [0.0] * 4 + [1.0] + [0.0] * 5 and chart["series"][3]["axis"] == 1
    assert flagged == [["2026-11-01 08:05:00", 16.0, 5]], "Beijing wall-clock time, amount in 元, seq"
    assert expected[4][1] == 15.0
    # the chart's data is in the page as JSON for alerts.js, beside the element it draws into
    opening = '<script id="alert-chart-data" type="application/json">'
    assert opening in html and 'id="alert-chart"' in html
    start = html.index(opening) + len(opening)
    assert json.loads(html[start:html.index("</script>", start)]) == json.loads(json.dumps(chart))


def test_meter_evidence_chart_and_flagged_readings(client: Client, world: World, meter_alert: Alert) -> None:
    login(client, world.users["city_regulator"])
    page = client.get(detail(meter_alert))
    facts = dict(page.context["evidence"].facts)
    assert facts["最大回退量（m³）"] == "0.300" and facts["异常读数序号"] == "7"
    chart = page.context["chart"]
    assert chart["y_name"] == "读数（m³）"
    line, marks = chart["series"][0]["data"], chart["series"][1]["data"]
    assert len(line) == 12 and line[0] == ["2026-11-01 00:00:00", 100.0, 1]
    assert marks == [["2026-11-01 12:00:00", 100.2, 7]]
    records = page.context["telemetry"].records
    assert records.rows == [["7", "2026-11-01 12:00:00", "100.200", "-0.300", "—"]]
    assert "预警涉及的读数" in page.content.decode()


def test_meter_chart_is_drawn_around_the_flagged_reading(world: World) -> None:
    """Only a window of readings around the evidence is read, not the whole history."""
    values = [float(i) for i in range(400)]
    values[300] = 250.0
    ingest_lines([reading(i + 1, i, v) for i, v in enumerate(values)], source="t")
    run_detectors()
    alert = Alert.objects.get(detector="meter.reverse_flow")
    tel = selectors.alert_telemetry(principal=world.users["admin"], pk=alert.pk)
    assert tel.chart is not None
    seqs = [p[2] for p in tel.chart["series"][0]["data"]]
    assert tel.count == 2 * selectors.WINDOW == len(seqs)
    assert seqs[0] == 301 - selectors.WINDOW and seqs[-1] == 300 + selectors.WINDOW and 301 in seqs


def test_charger_continuity_evidence_and_chart(client: Client, world: World) -> None:
    op = world.orgs["mo_n"]
    cs = Place.objects.create(key="CS-1", name="南山充电站", kind="charging_station", region_id="440305", operator=op)
    model = InstrumentModel.objects.create(maker=world.orgs["maker"], name="EV-7", instrument_type_id="ev_charger_dc",
                                           accuracy_class="1")
    Instrument.objects.create(device_id="EV-1", serial="E1", model=model, instrument_type_id="ev_charger_dc",
                              maker=world.orgs["maker"], owner=op, place=cs, region_id="440305",
                              status="in_service", accuracy_class="1")
    sessions = [(0, 10_000, 10_000), (10_000, 25_000, 15_000), (24_000, 30_000, 6_000), (30_000, 40_000, 9_000)]
    lines = [json.dumps({"kind": "charger.session", "device": "EV-1", "seq": i + 1, "session_id": f"s{i + 1}",
                         "start_ts": f"2026-11-01T{8 + 2 * i:02d}:00:00+08:00",
                         "end_ts": f"2026-11-01T{9 + 2 * i:02d}:00:00+08:00", "meter_start_wh": a, "meter_end_wh": b,
                         "energy_wh": e, "vehicle": "veh-1"}).encode() for i, (a, b, e) in enumerate(sessions)]
    assert ingest_lines(lines, source="t").accepted == 4
    run_detectors()
    alert = Alert.objects.get(detector="charger.register_continuity")
    login(client, world.users["city_regulator"])
    page = client.get(detail(alert))
    assert page.status_code == 200
    backwards, mismatch = page.context["evidence"].tables
    assert backwards.rows == [["3", "25.000", "24.000", "1.000"]]
    assert mismatch.rows == [["4", "9.000", "10.000", "-1.000"]]
    chart = page.context["chart"]
    start, end, marks = (s["data"] for s in chart["series"])
    assert [p[1] for p in start] == [0.0, 10.0, 24.0, 30.0] and [p[1] for p in end] == [10.0, 25.0, 30.0, 40.0]
    assert [p[2] for p in marks] == [3, 4]
    assert chart["y_name"] == "电能表读数（kWh）"


def test_scale_event_alert_draws_the_events(client: Client, world: World) -> None:
    events = [("power_on", 1), ("zero", 2), ("seal_open", 3), ("calibration", 4)]
    lines = [json.dumps({"kind": "scale.event", "device": "SC-F-1", "ts": f"2026-11-01T0{seq}:00:00+08:00",
                         "seq": seq, "event": ev}).encode() for ev, seq in events]
    ingest_lines(lines, source="t")
    run_detectors()
    alert = Alert.objects.get(detector="scale.unauthorized_event")
    login(client, world.users["futian_regulator"])
    page = client.get(detail(alert))
    [table] = page.context["evidence"].tables
    assert table.rows == [["3", "封印打开"], ["4", "校准"]]
    chart = page.context["chart"]
    assert "封印打开" in chart["y_categories"]
    assert [p[2] for p in chart["series"][1]["data"]] == [3, 4]


def test_recheck_shortfall_evidence_and_chart(client: Client, world: World) -> None:
    pairs = [(1000, 1000), (1060, 1000), (850, 800), (505, 500)]
    lines = [json.dumps({"kind": "scale.recheck", "place": "MKT-F", "device": "SC-F-1",
                         "ts": f"2026-11-01T1{i}:00:00+08:00", "claimed_g": c, "actual_g": a}).encode()
             for i, (c, a) in enumerate(pairs)]
    assert ingest_lines(lines, source="t").accepted == 4
    DetectorConfig.objects.create(key="scale.recheck_shortfall", params={"reference_pct": 1.5})
    now = timezone.now()
    inst = world.instruments["I_F"]
    alert = Alert.objects.create(
        detector="scale.recheck_shortfall", device=inst, owner=inst.owner, region=inst.region, severity="critical",
        opened_at=now, updated_at=now,
        evidence={"rechecks": 4, "mean_shortfall_pct": 2.9, "largest_shortfall_pct": 6.25, "cusum_pct": 5.3,
                  "examples": [{"claimed_g": c, "actual_g": a} for c, a in pairs]})
    login(client, world.users["futian_regulator"])
    page = client.get(detail(alert))
    facts = dict(page.context["evidence"].facts)
    assert facts["平均短秤比例"] == "2.90%" and facts["计入的复秤次数"] == "4"
    [table] = page.context["evidence"].tables
    assert table.rows[2] == ["850", "800", "50", "6.25%"]
    chart = page.context["chart"]
    assert [p[1] for p in chart["series"][0]["data"]] == [0.0, 6.0, 6.25, 1.0]
    assert [p[1] for p in chart["series"][1]["data"]] == [6.0, 6.25], "above the 1.5 % reference"


def test_evidence_of_an_unknown_shape_is_listed_as_it_is(client: Client, world: World) -> None:
    now = timezone.now()
    inst = world.instruments["I_F"]
    alert = Alert.objects.create(detector="scale.amount_mismatch", device=inst, owner=inst.owner, region=inst.region,
                                 severity="warning", opened_at=now, updated_at=now, evidence={"note": "older format"})
    login(client, world.users["admin"])
    page = client.get(detail(alert))
    assert page.status_code == 200
    assert ("note", "older format") in page.context["evidence"].facts
    assert page.context["chart"] is None and 'id="telemetry-empty"' in page.content.decode()


def test_every_detector_title_is_marked_for_translation() -> None:
    assert {cls.title_zh for cls in REGISTRY.values()} <= set(selectors.DETECTOR_TITLES)


# ------------------------------------------------------------------------------------ filters, counts

def _alerts(world: World, n: int) -> None:
    """``n`` closed alerts on Futian's scale, alternating detectors and severities (closed ones may repeat)."""
    inst = world.instruments["I_F"]
    start = dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.UTC)
    keys = list(REGISTRY)
    Alert.objects.bulk_create([
        Alert(detector=keys[i % len(keys)], device=inst, owner=inst.owner, region=inst.region,
              severity=("info", "warning", "critical")[i % 3], status=("confirmed", "dismissed")[i % 2],
              opened_at=start + dt.timedelta(minutes=i), updated_at=start, evidence={"n": i}) for i in range(n)])


def test_filters_counts_and_beijing_time(client: Client, world: World, scale_alert: Alert, meter_alert: Alert) -> None:
    _alerts(world, 6)
    login(client, world.users["city_regulator"])
    response = client.get(LIST)
    tabs = {t["key"]: t["count"] for t in response.context["tabs"]}
    assert tabs == {None: 8, "new": 2, "triaged": 0, "confirmed": 3, "dismissed": 3}
    body = response.content.decode()
    assert "2026-11-01 08:30" in body, "opened_at is shown in Asia/Shanghai"
    only_new = client.get(LIST + "?status=new")
    assert {r.alert.pk for r in only_new.context["rows"]} == {scale_alert.pk, meter_alert.pk}
    assert {t["key"]: t["count"] for t in only_new.context["tabs"]}[None] == 8, "counts ignore the status filter"
    by_detector = client.get(LIST + "?detector=meter.reverse_flow&status=new")
    assert [r.alert.pk for r in by_detector.context["rows"]] == [meter_alert.pk]
    assert [r.alert.pk for r in client.get(LIST + "?district=440305").context["rows"]] == [meter_alert.pk]
    assert len(client.get(LIST + "?severity=critical").context["rows"]) == 2 + 2
    # an unknown value drops that filter only
    assert len(client.get(LIST + "?severity=bogus&district=440305").context["rows"]) == 1
    # an htmx request gets the results only
    partial = client.get(LIST + "?status=new", headers={"HX-Request": "true"})
    text = partial.content.decode()
    assert text.lstrip().startswith('<div id="alert-results"') and "<html" not in text
    assert "HX-Request" in partial["Vary"]


def test_list_query_count_does_not_grow_with_the_alerts(client: Client, world: World,
                                                        django_assert_max_num_queries: Any) -> None:
    _alerts(world, 3)
    login(client, world.users["city_regulator"])
    client.get(LIST)  # warm up (session, content types)
    with django_assert_max_num_queries(10) as few:
        response = client.get(LIST)
    assert len(response.context["rows"]) == 3
    _alerts(world, 57)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST)
    assert len(response.context["rows"]) == 50
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(LIST + "?page=2").context["rows"]) == 10
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(LIST + "?status=confirmed&severity=info&district=440304").context["rows"]) == 1 + 10


def test_zero_drift_evidence_and_chart(client: Client, world: World) -> None:
    pairs = [(345, 312), (680, 648), (1240, 1207), (515, 483), (2130, 2096)]
    lines = [json.dumps({"kind": "scale.recheck", "place": "MKT-F", "device": "SC-F-1",
                         "ts": f"2026-11-0{i + 1}T10:00:00+08:00", "claimed_g": c, "actual_g": a}).encode()
             for i, (c, a) in enumerate(pairs)]
    assert ingest_lines(lines, source="t").accepted == 5
    run_detectors(keys=["scale.zero_drift"])
    alert = Alert.objects.get(detector="scale.zero_drift")
    login(client, world.users["futian_regulator"])
    page = client.get(detail(alert))
    facts = dict(page.context["evidence"].facts)
    assert facts["零点偏移（克）"] == f"{alert.evidence['offset_g']:+.1f}" and facts["计入的复秤次数"] == "5"
    assert facts["分析期间"] == "自 2026-11-01 起 5 天"
    [table] = page.context["evidence"].tables
    assert table.rows[0] == ["345", "312", "+33"]
    chart = page.context["chart"]
    assert [p[1] for p in chart["series"][0]["data"]] == [33, 32, 33, 32, 34]
    assert chart["series"][1]["data"][0][:2] == ["2026-11-01 00:00:00", alert.evidence["offset_g"]]


def test_continuous_flow_evidence(client: Client, world: World) -> None:
    ingest_lines([reading(h + 1, h, 100 + 0.003 * h) for h in range(50)], source="t")
    run_detectors(keys=["meter.continuous_flow"])
    alert = Alert.objects.get(detector="meter.continuous_flow")
    login(client, world.users["admin"])
    page = client.get(detail(alert))
    facts = dict(page.context["evidence"].facts)
    assert facts["连续用量时长（小时）"] == "49.0" and facts["最小流量（升/小时）"] == "3.0"
    assert facts["期间读数"] == "50" and facts["起止读数序号"] == "1 — 50" and facts["仍在持续"] == "是"
    assert page.context["chart"] is not None
