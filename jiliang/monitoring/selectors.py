"""Every read behind the alert pages (预警): the list, one alert, its evidence, the telemetry around it.

Each function starts from ``Alert.objects.restrict(principal, ...)``, so a person never reads an alert, or
the telemetry of an alert's instrument, outside their scope: the telemetry is read only after the alert
was found visible, and only for that alert's instrument.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, pgettext

from jiliang.core.changelog import changes, history_for
from jiliang.core.errors import NotFound
from jiliang.engine.detectors import REGISTRY
from jiliang.monitoring.detection import TRANSITIONS
from jiliang.monitoring.fuel import FUEL_DETECTORS
from jiliang.monitoring.models import (
    Alert,
    ChargerSession,
    DetectorConfig,
    MeterReading,
    ScaleEvent,
    ScaleRecheck,
    ScaleTxn,
)

# The detectors' titles live on the pure engine classes (no Django there); they are listed here so that
# makemessages extracts them for the catalogue.  tests/pages/test_alerts_pages.py checks the list is complete.
DETECTOR_TITLES = (
    gettext_noop("计价金额与单价×重量不符"),
    gettext_noop("公平秤复秤短秤（疑似作弊）"),
    gettext_noop("计价秤零点漂移"),
    gettext_noop("软件校验和与备案不符"),
    gettext_noop("检定以外的校准、参数修改或破封"),
    gettext_noop("表计倒转（逆流）"),
    gettext_noop("表计停走（邻户正常用量）"),
    gettext_noop("读数异常跳变"),
    gettext_noop("连续流量（疑似漏水）"),
    gettext_noop("充电桩电能读数不连续"),
    gettext_noop("充电桩签名计量数据校验失败"),
)

# Badge tones (CSS classes badge-* in static/jiliang/app.css).
STATUS_TONE = {"new": "info", "triaged": "warn", "confirmed": "danger", "dismissed": "muted"}
SEVERITY_TONE = {"info": "info", "warning": "warn", "critical": "danger"}

# Telemetry drawn around an alert: this many records before and from the first record the evidence names.
WINDOW = 100
# History entries that change on every save and say nothing to a reader.
_HISTORY_HIDDEN = {"updated_at", "id"}


# ------------------------------------------------------------------------------------------------ lists

@dataclass(frozen=True)
class AlertFilters:
    """The list's filters; an empty value does not filter."""

    status: str = ""
    detector: str = ""
    severity: str = ""
    region: str = ""


def detector_title(key: str) -> str:
    """The detector's Chinese title (translated when the catalogue has it), or its key when unknown."""
    if key in FUEL_DETECTORS:
        return _(FUEL_DETECTORS[key])
    cls = REGISTRY.get(key)
    return _(cls.title_zh) if cls is not None else key


def detector_choices() -> list[tuple[str, str]]:
    """Every registered detector as (key, title), in the registry's order, then the fuel alerts."""
    return [(key, detector_title(key)) for key in [*REGISTRY, *FUEL_DETECTORS]]


def alert_list(*, principal: Any, filters: AlertFilters | None = None) -> QuerySet[Alert]:
    """The alerts the principal may view, newest first, with what a row shows fetched in the same query."""
    f = filters or AlertFilters()
    qs = Alert.objects.restrict(principal, "view").select_related("device", "owner", "region")
    if f.status:
        qs = qs.filter(status=f.status)
    if f.detector:
        qs = qs.filter(detector=f.detector)
    if f.severity:
        qs = qs.filter(severity=f.severity)
    if f.region:
        from jiliang.accounts.roles import region_prefix

        qs = qs.filter(region__code__startswith=region_prefix(f.region))
    return qs.order_by("-opened_at", "-id")


def alert_status_counts(*, principal: Any, filters: AlertFilters | None = None) -> dict[str, int]:
    """How many alerts per status (and ``all``) match the filters other than the status, in one query."""
    f = filters or AlertFilters()
    others = AlertFilters(detector=f.detector, severity=f.severity, region=f.region)
    rows = alert_list(principal=principal, filters=others).order_by().values("status").annotate(n=Count("id"))
    counts = {value: 0 for value, _label in Alert.Status.choices}
    for row in rows:
        counts[str(row["status"])] = int(row["n"])
    counts["all"] = sum(counts.values())
    return counts


@dataclass(frozen=True)
class AlertRow:
    """An alert with what its list row shows besides the model's own fields."""

    alert: Alert
    title: str
    status_tone: str
    severity_tone: str


def alert_rows(alerts: Iterable[Alert]) -> list[AlertRow]:
    """Rows for a page of alerts (no queries: the page's queryset fetched the related rows)."""
    return [AlertRow(alert=a, title=detector_title(a.detector), status_tone=STATUS_TONE.get(a.status, "neutral"),
                     severity_tone=SEVERITY_TONE.get(a.severity, "neutral")) for a in alerts]


# ------------------------------------------------------------------------------------------- one alert

def alert_get(*, principal: Any, pk: int, action: str = "view") -> Alert:
    """One alert in the principal's scope for ``action``; ``NotFound`` otherwise."""
    qs = Alert.objects.restrict(principal, action).select_related("device", "device__instrument_type", "owner",
                                                                  "region")
    try:
        return qs.get(pk=pk)
    except Alert.DoesNotExist:
        raise NotFound(f"alert {pk} not found") from None


def may_decide(*, principal: Any, alert_id: int) -> bool:
    """Whether the central policy lets the principal triage, confirm or dismiss this alert."""
    return Alert.objects.restrict(principal, "change").filter(pk=alert_id).exists()


def next_statuses(alert: Alert) -> list[tuple[str, str]]:
    """The statuses the alert may move to, as (value, label), in lifecycle order."""
    allowed = TRANSITIONS.get(alert.status, set())
    return [(value, str(label)) for value, label in Alert.Status.choices if value in allowed]


@dataclass(frozen=True)
class HistoryEntry:
    """One change-log entry as the history panel (templates/includes/history.html) shows it."""

    at: Any
    action: str
    action_label: str
    actor: str
    changes: list[tuple[str, Any, Any]]


def alert_history(alert: Alert) -> list[HistoryEntry]:
    """The alert's change log, newest first, with field labels and status labels instead of raw values."""
    labels = {f.attname: str(f.verbose_name) for f in alert._meta.concrete_fields}
    status_labels = {value: str(label) for value, label in Alert.Status.choices}
    severity_labels = {value: str(label) for value, label in Alert.Severity.choices}
    shown = {"status": status_labels, "severity": severity_labels}
    out: list[HistoryEntry] = []
    for entry in history_for(alert):
        diff: list[tuple[str, Any, Any]] = []
        if entry.action == "update":
            for name, (old, new) in changes(entry.before or {}, entry.after or {}).items():
                if name in _HISTORY_HIDDEN:
                    continue
                names = shown.get(name, {})
                diff.append((labels.get(name, name), names.get(old, old), names.get(new, new)))
        out.append(HistoryEntry(at=entry.at, action=entry.action, action_label=entry.get_action_display(),
                                actor=entry.actor_label, changes=diff))
    return out


def alert_task(*, principal: Any, alert: Alert) -> dict[str, Any]:
    """The alert's inspection task (预警核查) for the alert page: ``task`` (None when there is none),
    ``task_visible`` (whether the person may open the task's page) and ``may_open_task`` (a confirmed alert
    without a task, and the person a regulator who may decide it, or an administrator)."""
    from jiliang.accounts.roles import Role, Scope
    from jiliang.supervision.models import InspectionTask

    task = InspectionTask.objects.filter(alert_id=alert.pk).select_related("inspector_1", "inspector_2").first()
    scope = Scope.of(principal)
    may_open = (task is None and alert.status == Alert.Status.CONFIRMED
                and (scope.is_admin or scope.role == Role.REGULATOR)
                and may_decide(principal=principal, alert_id=alert.pk))
    visible = task is not None and InspectionTask.objects.restrict(principal, "view").filter(pk=task.pk).exists()
    return {"task": task, "task_visible": visible, "may_open_task": may_open}


# -------------------------------------------------------------------------------------------- evidence

@dataclass(frozen=True)
class EvidenceTable:
    """A table of example records: ``columns`` as (label, numeric), ``rows`` as formatted cells."""

    title: str
    columns: list[tuple[str, bool]]
    rows: list[list[str]]
    note: str = ""

    @property
    def body(self) -> list[list[tuple[str, bool]]]:
        """Each row's cells as (text, numeric), for right-aligning the numbers."""
        numeric = [n for _label, n in self.columns]
        return [list(zip(row, numeric, strict=False)) for row in self.rows]


@dataclass(frozen=True)
class EvidenceView:
    """An alert's evidence for people: key figures, tables of the example records, and the raw JSON."""

    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[EvidenceTable] = field(default_factory=list)
    raw: str = ""


def _yuan(fen: Any) -> str:
    return f"{float(fen) / 100:,.2f}"


def _num(value: Any, digits: int = 0) -> str:
    return f"{float(value):,.{digits}f}"


def meter_unit(instrument_type: str) -> str:
    """The unit a household meter's register counts in (its readings are stored in thousandths of it)."""
    return {"water_meter": "m³", "gas_meter": "m³", "electricity_meter": "kWh"}.get(instrument_type, "")


def _amount_mismatch(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    rows = []
    for x in ev.get("examples", []):
        rows.append([str(x["seq"]), _num(x["net_g"]), _yuan(x["unit_price_fen_per_kg"]), _yuan(x["amount_fen"]),
                     _yuan(x["expected_fen"]), _yuan(int(x["amount_fen"]) - int(x["expected_fen"]))])
    return EvidenceView(
        facts=[(_("金额不符的交易"), _num(ev["mismatches"])), (_("分析的交易"), _num(ev.get("transactions", 0))),
               (_("多收金额合计（元）"), _yuan(ev.get("overcharged_fen", 0)))],
        tables=[EvidenceTable(
            title=_("金额不符的交易（示例）"),
            columns=[(_("序号"), True), (_("净重（克）"), True), (_("单价（元/千克）"), True),
                     (_("收取金额（元）"), True), (_("应收金额（元）"), True), (_("差额（元）"), True)],
            rows=rows, note=_("应收金额 = 单价 × 净重，按分四舍五入。"))] if rows else [])


def _recheck_shortfall(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    rows = []
    for x in ev.get("examples", []):
        claimed, actual = int(x["claimed_g"]), int(x["actual_g"])
        rows.append([_num(claimed), _num(actual), _num(claimed - actual),
                     f"{(claimed - actual) / max(actual, 1) * 100:.2f}%"])
    return EvidenceView(
        facts=[(_("计入的复秤次数"), _num(ev["rechecks"])),
               (_("平均短秤比例"), f"{float(ev['mean_shortfall_pct']):.2f}%"),
               (_("最大短秤比例"), f"{float(ev.get('largest_shortfall_pct', 0)):.2f}%"),
               (_("累积和（CUSUM）"), f"{float(ev.get('cusum_pct', 0)):.2f}%")],
        tables=[EvidenceTable(
            title=_("最近的复秤（示例）"),
            columns=[(_("标称重量（克）"), True), (_("复秤重量（克）"), True), (_("短秤（克）"), True),
                     (_("短秤比例"), True)],
            rows=rows, note=_("短秤比例 = (标称重量 − 复秤重量) ÷ 复秤重量；累积和超过阈值即预警。"))] if rows else [])


def _zero_drift(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    rows = []
    for x in ev.get("examples", []):
        claimed, actual = int(x["claimed_g"]), int(x["actual_g"])
        rows.append([_num(claimed), _num(actual), f"{claimed - actual:+,d}"])
    lo, hi = ev.get("offset_ci95_g") or [None, None]
    return EvidenceView(
        facts=[(_("零点偏移（克）"), _pm(ev["offset_g"], None, 1)),
               (_("95% 区间（克）"), f"{float(lo):+.1f} — {float(hi):+.1f}" if lo is not None else "—"),
               (_("标准误差（克）"), _num(ev.get("offset_se_g", 0), 2)),
               (_("示值比例误差（%）"), _pm(ev.get("slope_pct"), None, 3)),
               (_("报警阈值（克）"), f"±{float(ev.get('max_offset_g', 0)):g}"),
               (_("计入的复秤次数"), _num(ev["rechecks"])),
               (_("分析期间"), _("自 %(since)s 起 %(days)s 天") % {"since": ev.get("since", "—"),
                                                                "days": ev.get("days", "—")})],
        tables=[EvidenceTable(
            title=_("最近的复秤（示例）"),
            columns=[(_("标称重量（克）"), True), (_("复秤重量（克）"), True), (_("差值（克）"), True)],
            rows=rows, note=_("对复秤差值（标称 − 复秤）与复秤重量作直线拟合：截距是与重量无关的零点偏移，"
                              "斜率是随重量增长的比例误差（量程误差或作弊）。"))] if rows else [])


def _software_checksum(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    return EvidenceView(facts=[(_("上报的软件校验和"), str(ev["reported"])), (_("备案的软件校验和"), str(ev["filed"])),
                               (_("事件序号"), str(ev.get("seq", "—")))])


def _unauthorized_event(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    labels = {value: str(label) for value, label in ScaleEvent.Event.choices}
    rows = [[str(e["seq"]), labels.get(str(e["event"]), str(e["event"]))] for e in ev.get("events", [])]
    return EvidenceView(
        facts=[(_("检定以外的事件"), _num(ev.get("count", len(rows))))],
        tables=[EvidenceTable(title=_("检定以外的校准、参数修改或破封事件"),
                              columns=[(_("序号"), True), (_("事件"), False)],
                              rows=rows, note=_("事件前后一天内没有该器具的检定记录。"))] if rows else [])


def _reverse_flow(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    return EvidenceView(facts=[
        (_("异常读数"), _num(ev["readings"])),
        (_("最大回退量（%(unit)s）") % {"unit": unit or pgettext("unit of measure", "单位")},
         _num(float(ev["largest_decrease_milli"]) / 1000, 3)),
        (_("逆流标志次数"), _num(ev.get("reverse_flags", 0))),
        (_("异常读数序号"), "、".join(str(s) for s in ev.get("seqs", [])) or "—"),
    ])


def _stuck_register(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    return EvidenceView(facts=[
        (_("读数未变化（小时）"), _num(ev["hours_unchanged"], 1)),
        (_("停走读数（%(unit)s）") % {"unit": unit or pgettext("unit of measure", "单位")},
         _num(float(ev["register_milli"]) / 1000, 3)),
        (_("同一场所的其他表计"), _num(ev.get("neighbours", 0))),
        (_("其中正常走字的比例"), f"{float(ev.get('neighbours_consuming_share', 0)) * 100:.1f}%"),
    ])


def _continuous_flow(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    rate = float(ev["min_rate_milli_per_h"])
    if unit == "m³":  # thousandths of a cubic metre are litres
        rate_fact = (_("最小流量（升/小时）"), _num(rate, 1))
    else:
        per_hour = _("%(unit)s/小时") % {"unit": unit or pgettext("unit of measure", "单位")}
        rate_fact = (_("最小用量速率（%(unit)s）") % {"unit": per_hour}, _num(rate / 1000, 4))
    seqs = ev.get("seqs") or []
    return EvidenceView(facts=[
        (_("连续用量时长（小时）"), _num(ev["hours"], 1)),
        rate_fact,
        (_("期间读数"), _num(ev.get("readings", 0))),
        (_("仍在持续"), _("是") if ev.get("ongoing") else _("否")),
        (_("起止读数序号"), " — ".join(str(s) for s in seqs) or "—"),
    ])


def _implausible_jump(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    per_hour = _("%(unit)s/小时") % {"unit": unit or pgettext("unit of measure", "单位")}
    return EvidenceView(facts=[
        (_("异常跳变次数"), _num(ev["jumps"])),
        (_("最大用量速率（%(unit)s）") % {"unit": per_hour}, _num(float(ev["largest_rate_milli_per_h"]) / 1000, 3)),
        (_("表计最大流量（%(unit)s）") % {"unit": per_hour}, _num(float(ev["capacity_milli_per_h"]) / 1000, 3)),
        (_("最大跳变的读数序号"), str(ev.get("seq", "—"))),
    ])


def _register_continuity(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    problems = ev["problems"]
    tables = []
    backwards = problems.get("register_backwards", [])
    if backwards:
        tables.append(EvidenceTable(
            title=_("读数回退：会话起始读数低于上一会话结束读数"),
            columns=[(_("会话序号"), True), (_("上一会话结束读数（kWh）"), True), (_("本会话起始读数（kWh）"), True),
                     (_("回退量（kWh）"), True)],
            rows=[[str(p["seq"]), _num(float(p["previous_end_wh"]) / 1000, 3), _num(float(p["start_wh"]) / 1000, 3),
                   _num((float(p["previous_end_wh"]) - float(p["start_wh"])) / 1000, 3)] for p in backwards]))
    mismatch = problems.get("energy_mismatch", [])
    if mismatch:
        tables.append(EvidenceTable(
            title=_("电量与读数差不符：记录电量 ≠ 结束读数 − 起始读数"),
            columns=[(_("会话序号"), True), (_("记录电量（kWh）"), True), (_("结束 − 起始（kWh）"), True),
                     (_("差值（kWh）"), True)],
            rows=[[str(p["seq"]), _num(float(p["energy_wh"]) / 1000, 3), _num(float(p["end_minus_start_wh"]) / 1000, 3),
                   _num((float(p["energy_wh"]) - float(p["end_minus_start_wh"])) / 1000, 3)] for p in mismatch]))
    return EvidenceView(facts=[(_("读数回退的会话"), _num(len(backwards))), (_("电量不符的会话"), _num(len(mismatch)))],
                        tables=tables)


def _pm(value: Any, half: Any, digits: int, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{float(value):+.{digits}f}" + (f" ± {float(half):.{digits}f}" if half is not None else "") + unit


def _window(ev: Mapping[str, Any]) -> str:
    return f"{str(ev['window_from'])[:16].replace('T', ' ')} — {str(ev['window_to'])[:16].replace('T', ' ')}"


def _tank_leak(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    return EvidenceView(facts=[
        (_("场所"), str(ev["place"])), (_("油罐"), str(ev["tank"])),
        (_("该油罐的加油枪"), "、".join(ev.get("nozzles", [])) or "—"),
        (_("渗漏速率（升/小时，95% 区间）"), _pm(ev["leak_l_per_h"], ev.get("leak_ci95"), 3)),
        (_("单侧下限（升/小时）"), _pm(ev.get("leak_lower_l_per_h"), None, 3)),
        (_("报警阈值（升/小时）"), _num(ev["threshold_l_per_h"], 2)),
        (_("窗口内估计损失（升）"), _num(ev.get("lost_l") or 0, 1)),
        (_("液位仪读数噪声（升）"), _num(ev.get("noise_sd_l") or 0, 2)),
        (_("液位仪读数间隔（分钟）"), _num(ev["reading_minutes"], 1) if ev.get("reading_minutes") else "—"),
        (_("分析窗口"), _window(ev)),
    ])


def _nozzle_drift(ev: Mapping[str, Any], unit: str) -> EvidenceView:
    reasons = {"drift": _("误差漂移"), "exceeds_mpe": _("超出使用中最大允许误差")}
    facts = [(_("场所"), str(ev["place"])), (_("油罐"), str(ev["tank"])),
             (_("预警原因"), "、".join(str(reasons.get(r, r)) for r in ev.get("reasons", []))),
             (_("当前误差（%，95% 区间）"), _pm(ev["error_pct"], ev.get("ci95_pct"), 3)),
             (_("最大允许误差（%）"), f"±{float(ev['mpe_pct']):g}")]
    if ev.get("drift_pct") is not None:
        facts += [(_("漂移量（%，95% 区间）"), _pm(ev["drift_pct"], ev.get("drift_ci95_pct"), 3)),
                  (_("漂移前误差（%）"), _pm(ev.get("error_before_pct"), None, 3)),
                  (_("漂移开始"), str(ev.get("drift_since") or "—")[:16].replace("T", " ")),
                  (_("归因于该加油枪的概率"), f"{float(ev.get('drift_p') or 0) * 100:.0f}%")]
    facts += [(_("分析的加油记录"), _num(ev.get("sales", 0))), (_("分析窗口"), _window(ev))]
    return EvidenceView(facts=facts)


_EVIDENCE: dict[str, Callable[[Mapping[str, Any], str], EvidenceView]] = {
    "fuel.tank_leak": _tank_leak,
    "fuel.nozzle_drift": _nozzle_drift,
    "scale.amount_mismatch": _amount_mismatch,
    "scale.recheck_shortfall": _recheck_shortfall,
    "scale.zero_drift": _zero_drift,
    "scale.software_checksum": _software_checksum,
    "scale.unauthorized_event": _unauthorized_event,
    "meter.reverse_flow": _reverse_flow,
    "meter.stuck_register": _stuck_register,
    "meter.implausible_jump": _implausible_jump,
    "meter.continuous_flow": _continuous_flow,
    "charger.register_continuity": _register_continuity,
}


def _generic(ev: Mapping[str, Any]) -> EvidenceView:
    facts = []
    for key, value in ev.items():
        shown = value if isinstance(value, str | int | float | bool) else json.dumps(value, ensure_ascii=False)
        facts.append((str(key), str(shown)))
    return EvidenceView(facts=facts)


def alert_evidence(alert: Alert) -> EvidenceView:
    """The alert's evidence laid out for its detector; evidence of an unknown shape is listed key by key."""
    ev = alert.evidence if isinstance(alert.evidence, dict) else {"evidence": alert.evidence}
    raw = json.dumps(ev, ensure_ascii=False, indent=2, sort_keys=True)
    render = _EVIDENCE.get(alert.detector)
    view = None
    if render is not None:
        try:
            view = render(ev, meter_unit(alert.device.instrument_type_id))
        except (KeyError, TypeError, ValueError, AttributeError):
            view = None  # evidence written by another version of the detector: show it as it is
    if view is None:
        view = _generic(ev)
    return EvidenceView(facts=view.facts, tables=view.tables, raw=raw)


# ------------------------------------------------------------------------------------------- telemetry

@dataclass(frozen=True)
class Telemetry:
    """The device's telemetry around an alert: ``chart`` (JSON for static/jiliang/alerts.js; ``None`` when
    there is nothing to draw) and a table of the records the evidence points at."""

    chart: dict[str, Any] | None = None
    records: EvidenceTable | None = None
    count: int = 0


def _local(ts: Any) -> str:
    """Wall-clock time in the site's zone (Asia/Shanghai), as the chart's time axis shows it."""
    return str(timezone.localtime(ts).strftime("%Y-%m-%d %H:%M:%S"))


def _around(qs: QuerySet[Any], anchor_seq: int | None, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Up to ``2 × WINDOW`` records of one device: around ``anchor_seq``, or the most recent ones."""
    if anchor_seq is None:
        rows = list(qs.order_by("-seq").values(*fields)[: 2 * WINDOW])
    else:
        rows = list(qs.filter(seq__lt=anchor_seq).order_by("-seq").values(*fields)[:WINDOW])
        rows += list(qs.filter(seq__gte=anchor_seq).order_by("seq").values(*fields)[:WINDOW])
    rows.sort(key=lambda r: r["seq"])
    return rows


def _evidence_seqs(alert: Alert) -> set[int]:
    """Every record sequence number the evidence names (examples, events, sessions, readings)."""
    ev = alert.evidence if isinstance(alert.evidence, dict) else {}
    seqs: set[int] = set()

    def add(value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            seqs.add(value)

    add(ev.get("seq"))
    for s in ev.get("seqs", []) or []:
        add(s)
    for key in ("examples", "events"):
        for item in ev.get(key, []) or []:
            if isinstance(item, dict):
                add(item.get("seq"))
    problems = ev.get("problems", {})
    if isinstance(problems, dict):
        for items in problems.values():
            for item in items or []:
                if isinstance(item, dict):
                    add(item.get("seq"))
    return seqs


def _series(name: str, role: str, kind: str, data: list[list[Any]]) -> dict[str, Any]:
    return {"name": name, "role": role, "type": kind, "data": data}


def _meter_telemetry(alert: Alert, flagged: set[int]) -> Telemetry:
    unit = meter_unit(alert.device.instrument_type_id) or pgettext("unit of measure", "单位")
    rows = _around(MeterReading.objects.filter(device_id=alert.device_id), min(flagged) if flagged else None,
                   ("seq", "ts", "register_milli", "flags"))
    if alert.detector == "meter.stuck_register":
        stuck = (alert.evidence or {}).get("register_milli")
        flagged = {r["seq"] for r in rows if stuck is not None and r["register_milli"] == stuck}
    line = [[_local(r["ts"]), r["register_milli"] / 1000, r["seq"]] for r in rows]
    marks = [p for p, r in zip(line, rows, strict=True) if r["seq"] in flagged]
    y_name = _("读数（%(unit)s）") % {"unit": unit}
    chart = {"title": _("表计读数随时间变化"), "y_name": y_name, "x_type": "time",
             "series": [_series(_("读数"), "main", "line", line),
                        _series(_("预警涉及的读数"), "flag", "scatter", marks)]}
    table_rows = []
    previous = None
    for r in rows:
        if r["seq"] in flagged and alert.detector != "meter.stuck_register":
            change = "—" if previous is None else _num((r["register_milli"] - previous) / 1000, 3)
            flags = [label for bit, label in ((1, _("逆流")), (2, _("拆卸报警")), (4, _("电池欠压")))
                     if r["flags"] & bit]
            table_rows.append([str(r["seq"]), _local(r["ts"]), _num(r["register_milli"] / 1000, 3), change,
                               "、".join(flags) or "—"])
        previous = r["register_milli"]
    records = EvidenceTable(
        title=_("预警涉及的读数"),
        columns=[(_("序号"), True), (_("时间"), False), (y_name, True), (_("较上次变化"), True), (_("标志"), False)],
        rows=table_rows) if table_rows else None
    return Telemetry(chart=chart if rows else None, records=records, count=len(rows))


def _scale_amount_telemetry(alert: Alert, flagged: set[int]) -> Telemetry:
    rows = _around(ScaleTxn.objects.filter(device_id=alert.device_id), min(flagged) if flagged else None,
                   ("seq", "ts", "net_g", "unit_price_fen_per_kg", "amount_fen"))
    config = DetectorConfig.objects.filter(key=alert.detector).values_list("params", flat=True).first() or {}
    tolerance = float(config.get("tolerance_fen", REGISTRY[alert.detector].defaults["tolerance_fen"])) \
        if alert.detector in REGISTRY else 1.0
    charged, expected, difference, marks = [], [], [], []
    for r in rows:
        t = _local(r["ts"])
        exp = round(r["net_g"] * r["unit_price_fen_per_kg"] / 1000)
        charged.append([t, r["amount_fen"] / 100, r["seq"]])
        expected.append([t, exp / 100, r["seq"]])
        difference.append([t, (r["amount_fen"] - exp) / 100, r["seq"]])
        if r["seq"] in flagged or abs(r["amount_fen"] - exp) > tolerance:
            marks.append([t, r["amount_fen"] / 100, r["seq"]])
    chart = {"title": _("收取金额与应收金额（单价 × 净重）"), "y_name": _("金额（元）"), "y2_name": _("差额（元）"),
             "x_type": "time",
             "series": [_series(_("应收金额"), "alt", "line", expected),
                        _series(_("收取金额"), "main", "line", charged),
                        _series(_("金额不符"), "flag", "scatter", marks),
                        {**_series(_("差额（收取 − 应收）"), "diff", "bar", difference), "axis": 1}]}
    return Telemetry(chart=chart if rows else None, count=len(rows))


def _charger_telemetry(alert: Alert, flagged: set[int]) -> Telemetry:
    rows = _around(ChargerSession.objects.filter(device_id=alert.device_id), min(flagged) if flagged else None,
                   ("seq", "start_ts", "end_ts", "meter_start_wh", "meter_end_wh"))
    start = [[_local(r["start_ts"]), r["meter_start_wh"] / 1000, r["seq"]] for r in rows]
    end = [[_local(r["end_ts"]), r["meter_end_wh"] / 1000, r["seq"]] for r in rows]
    marks = [p for p, r in zip(start, rows, strict=True) if r["seq"] in flagged]
    chart = {"title": _("各次充电的起始与结束读数"), "y_name": _("电能表读数（kWh）"), "x_type": "time",
             "series": [_series(_("起始读数"), "alt", "line", start), _series(_("结束读数"), "main", "line", end),
                        _series(_("预警涉及的会话"), "flag", "scatter", marks)]}
    return Telemetry(chart=chart if rows else None, count=len(rows))


def _scale_event_telemetry(alert: Alert, flagged: set[int]) -> Telemetry:
    rows = _around(ScaleEvent.objects.filter(device_id=alert.device_id), min(flagged) if flagged else None,
                   ("seq", "ts", "event"))
    labels = {value: str(label) for value, label in ScaleEvent.Event.choices}
    points = [[_local(r["ts"]), labels.get(r["event"], r["event"]), r["seq"]] for r in rows]
    marks = [p for p, r in zip(points, rows, strict=True) if r["seq"] in flagged]
    chart = {"title": _("计价秤事件"), "y_name": _("事件"), "x_type": "time", "y_categories": list(labels.values()),
             "series": [_series(_("事件"), "main", "scatter", points),
                        _series(_("预警涉及的事件"), "flag", "scatter", marks)]}
    return Telemetry(chart=chart if rows else None, count=len(rows))


def _recheck_telemetry(alert: Alert, flagged: set[int]) -> Telemetry:
    """Re-weighs carry no sequence number: the most recent ones are drawn."""
    rows = list(ScaleRecheck.objects.filter(device_id=alert.device_id).order_by("-ts")
                .values("ts", "claimed_g", "actual_g")[: 2 * WINDOW])
    rows.reverse()
    config = DetectorConfig.objects.filter(key=alert.detector).values_list("params", flat=True).first() or {}
    cls = REGISTRY.get(alert.detector)
    reference = float(config.get("reference_pct", cls.defaults.get("reference_pct", 0.0) if cls else 0.0))
    points, marks = [], []
    for i, r in enumerate(rows, start=1):
        pct = round((r["claimed_g"] - r["actual_g"]) / max(r["actual_g"], 1) * 100, 3)
        points.append([_local(r["ts"]), pct, i])
        if pct > reference:
            marks.append([_local(r["ts"]), pct, i])
    chart = {"title": _("公平秤复秤的短秤比例"), "y_name": _("短秤比例（%）"), "x_type": "time",
             "series": [_series(_("短秤比例"), "main", "line", points),
                        _series(_("超过参考值的复秤"), "flag", "scatter", marks)]}
    return Telemetry(chart=chart if rows else None, count=len(rows))


def _zero_drift_telemetry(alert: Alert, flagged: set[int]) -> Telemetry:
    """The recent re-weighs' differences in grams, with the fitted zero offset since the day it starts."""
    rows = list(ScaleRecheck.objects.filter(device_id=alert.device_id).order_by("-ts")
                .values("ts", "claimed_g", "actual_g")[: 2 * WINDOW])
    rows.reverse()
    points = [[_local(r["ts"]), r["claimed_g"] - r["actual_g"], i] for i, r in enumerate(rows, start=1)]
    ev = alert.evidence or {}
    series = [_series(_("复秤差值（标称 − 复秤）"), "main", "scatter", points)]
    if rows and ev.get("since") and ev.get("offset_g") is not None:
        series.append(_series(_("估计的零点偏移"), "flag", "line", [[f"{ev['since']} 00:00:00", ev["offset_g"], 0],
                                                                   [points[-1][0], ev["offset_g"], 0]]))
    chart = {"title": _("公平秤复秤的差值（克）"), "y_name": _("差值（克）"), "x_type": "time", "series": series}
    return Telemetry(chart=chart if rows else None, count=len(rows))


def _chart_time(value: str) -> str:
    """"2026-11-14T06:00+08:00" or "2026-11-14" → wall-clock "2026-11-14 06:00:00" (noon for a day)."""
    return f"{value[:16].replace('T', ' ')}:00" if "T" in value else f"{value} 12:00:00"


def _leak_telemetry(alert: Alert, flagged: set[int]) -> Telemetry:
    """The tank balance from the evidence (the fit's output, not raw records): gauge minus book inventory."""
    ev = alert.evidence or {}
    points = [[_chart_time(t), v, i] for i, (t, v) in enumerate(ev.get("balance") or [], start=1)]
    line = [[_chart_time(t), v, i] for i, (t, v) in enumerate(ev.get("leak_line") or [], start=1)]
    chart = {"title": _("油罐账差：液位仪读数 − 账面库存"), "y_name": _("账差（升）"), "x_type": "time",
             "note": _("账差 = 液位仪读数 − 账面库存（各卸油段的期初库存为估计值，已换算到 20 ℃）；"
                       "红线为估计的渗漏趋势。时间为北京时间。"),
             "series": [_series(_("账差"), "main", "line", points),
                        _series(_("估计的渗漏趋势"), "flag", "line", line)]}
    return Telemetry(chart=chart if points else None, count=len(points))


def _drift_telemetry(alert: Alert, flagged: set[int]) -> Telemetry:
    """The nozzle's apparent error per day from the evidence, with its estimated error before and after the
    change and the in-service MPE."""
    ev = alert.evidence or {}
    periods = ev.get("periods") or []
    daily = [[_chart_time(d), e, round(float(v))] for d, e, v in periods if e is not None]
    if not periods:
        return Telemetry()
    first, last = _chart_time(periods[0][0])[:10] + " 00:00:00", _chart_time(periods[-1][0])[:10] + " 23:59:59"
    since = ev.get("drift_since")
    if since and ev.get("error_before_pct") is not None:
        estimate = [[first, ev["error_before_pct"], 0], [_chart_time(since), ev["error_before_pct"], 0],
                    [_chart_time(since), ev["error_pct"], 0], [last, ev["error_pct"], 0]]
    else:
        estimate = [[first, ev.get("error_pct"), 0], [last, ev.get("error_pct"), 0]]
    mpe = float(ev.get("mpe_pct") or 0.3)
    chart = {"title": _("加油枪逐日表观误差"), "y_name": _("误差（%）"), "x_type": "time",
             "note": _("逐日表观误差：把当日油罐未解释的账差全部归于该加油枪（只有一把枪漂移时成立），"
                       "受液位仪噪声影响逐日波动较大；红线为估计误差，黄线为最大允许误差。"),
             "series": [_series(_("逐日表观误差"), "main", "scatter", daily),
                        _series(_("估计误差"), "flag", "line", estimate),
                        _series(_("最大允许误差上限"), "diff", "line", [[first, mpe, 0], [last, mpe, 0]]),
                        _series(_("最大允许误差下限"), "diff", "line", [[first, -mpe, 0], [last, -mpe, 0]])]}
    return Telemetry(chart=chart, count=len(daily))


def _telemetry_reader(detector: str) -> Callable[[Alert, set[int]], Telemetry] | None:
    if detector == "fuel.tank_leak":
        return _leak_telemetry
    if detector == "fuel.nozzle_drift":
        return _drift_telemetry
    if detector.startswith("meter."):
        return _meter_telemetry
    if detector.startswith("charger."):
        return _charger_telemetry
    if detector == "scale.amount_mismatch":
        return _scale_amount_telemetry
    if detector == "scale.recheck_shortfall":
        return _recheck_telemetry
    if detector == "scale.zero_drift":
        return _zero_drift_telemetry
    if detector in ("scale.software_checksum", "scale.unauthorized_event"):
        return _scale_event_telemetry
    return None


def alert_telemetry(*, principal: Any, pk: int) -> Telemetry:
    """The telemetry of the alert's instrument around the records its evidence names (the most recent ones
    when it names none), for the chart.  Checks first that the principal may view the alert."""
    alert = alert_get(principal=principal, pk=pk)
    reader = _telemetry_reader(alert.detector)
    if reader is None:
        return Telemetry()
    return reader(alert, _evidence_seqs(alert))

