"""Forms of the inspection-plan pages: a new plan and the beacon of a draw.

Forms only parse and check the shape of input; what a person may create or run is decided by
:mod:`jiliang.supervision.services`.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from jiliang.engine.credit import CreditConfig
from jiliang.engine.draw import DEFAULT_SHARES
from jiliang.portal.templatetags.jiliang_ui import localized_name
from jiliang.registry.models import InstrumentType, Region

GRADES = ("A", "B", "C", "D")
BEACON_MAX = 200  # InspectionPlan.beacon
DEFAULT_PERIOD_DAYS = 90
ISO_DATE = "%Y-%m-%d"  # what <input type="date"> needs as its value, whatever the page's language


def _percent(share: float) -> Decimal:
    """0.05 -> Decimal('5'), 1.0 -> Decimal('100'), 0.125 -> Decimal('12.5') (the form shows percentages)."""
    value = Decimal(str(share)) * 100
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


class PlanCreateForm(forms.Form):
    """``POST /plans/``: name, region, period, instrument types and the share of entities drawn per grade."""

    name = forms.CharField(label=_("计划名称"), max_length=200,
                           widget=forms.TextInput(attrs={"placeholder": _("如：2026年第四季度电子计价秤双随机抽查")}))
    region = forms.ChoiceField(label=_("区域"), help_text=_("本辖区或其下辖区县"))
    period_start = forms.DateField(label=_("开始日期"), widget=forms.DateInput(attrs={"type": "date"}, format=ISO_DATE))
    period_end = forms.DateField(label=_("结束日期"), widget=forms.DateInput(attrs={"type": "date"}, format=ISO_DATE))
    instrument_types = forms.MultipleChoiceField(
        label=_("器具类型"), required=False, widget=forms.CheckboxSelectMultiple,
        help_text=_("抽样框为区域内拥有所选类型在用器具的市场主体；不选表示全部类型。"))
    share_A = forms.DecimalField(label=_("A 级"), min_value=0, max_value=100, max_digits=5, decimal_places=2)
    share_B = forms.DecimalField(label=_("B 级"), min_value=0, max_value=100, max_digits=5, decimal_places=2)
    share_C = forms.DecimalField(label=_("C 级"), min_value=0, max_value=100, max_digits=5, decimal_places=2)
    share_D = forms.DecimalField(label=_("D 级"), min_value=0, max_value=100, max_digits=5, decimal_places=2)

    def __init__(self, data: Any, *, regions: list[Region], types: list[InstrumentType],
                 shares: dict[str, float] | None = None) -> None:
        today = timezone.localdate()
        initial: dict[str, Any] = {"period_start": today, "period_end": today + dt.timedelta(days=DEFAULT_PERIOD_DAYS)}
        initial.update({f"share_{g}": _percent((shares or DEFAULT_SHARES)[g]) for g in GRADES})
        if len(regions) == 1:
            initial["region"] = regions[0].code
        super().__init__(data, initial=initial, label_suffix="")
        region = self.fields["region"]
        assert isinstance(region, forms.ChoiceField)
        region.choices = [(r.code, f"{localized_name(r.name, r.name_en)}（{r.code}）") for r in regions]
        kinds = self.fields["instrument_types"]
        assert isinstance(kinds, forms.MultipleChoiceField)
        kinds.choices = [(t.key, localized_name(t.name_zh, t.name_en)) for t in types]

    @property
    def share_fields(self) -> list[forms.BoundField]:
        """The four share fields, in grade order (the template lays them out in a row)."""
        return [self[f"share_{g}"] for g in GRADES]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("period_start"), data.get("period_end")
        if start and end and end < start:
            self.add_error("period_end", _("结束日期不能早于开始日期。"))
        return data

    def to_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`jiliang.supervision.services.plan_create` (valid form only)."""
        d = self.cleaned_data
        return {"name": d["name"].strip(), "region_code": d["region"], "period_start": d["period_start"],
                "period_end": d["period_end"], "instrument_types": list(d["instrument_types"]),
                "shares": {g: float(d[f"share_{g}"]) / 100 for g in GRADES}}


class DrawForm(forms.Form):
    """``POST /plans/<id>/draw/``: the beacon value, fixed only after the commitment was published."""

    beacon = forms.CharField(
        label=_("信标值"), max_length=BEACON_MAX, strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false",
                                      "placeholder": _("如：2026-11-23 国家授时中心随机数 8f3a…")}),
        help_text=_("信标值须在承诺公开之后确定，例如国家授时中心随机数或当日公开数据的摘要"))

    def __init__(self, data: Any = None) -> None:
        super().__init__(data, label_suffix="")


# ------------------------------------------------------------------------------------------ inspections

YES_NO = [("yes", _("是")), ("no", _("否"))]
SEAL = [("yes", _("完好")), ("no", _("破损")), ("", _("未检查"))]
SCALE_POINTS = 3  # rows of (load, error) offered for a scale on the phone form


class FindingForm(forms.Form):
    """``POST /tasks/<id>/findings/``: what was found at one instrument.  For a scale the test points are
    rows of load and error in grams; any other type takes its test points as JSON (SPEC 3.3)."""

    instrument_id = forms.IntegerField(widget=forms.HiddenInput)
    present = forms.ChoiceField(label=_("器具在场"), choices=YES_NO, widget=forms.RadioSelect, initial="yes")
    seal_intact = forms.ChoiceField(label=_("封印"), choices=SEAL, widget=forms.RadioSelect, required=False,
                                    initial="yes")
    sw_hash_shown = forms.CharField(
        label=_("显示的软件校验和"), max_length=128, required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"}),
        help_text=_("抄录器具显示的校验和，与备案值比对；不填表示未检查"))
    points_json = forms.CharField(label=_("检定点（JSON）"), required=False,
                                  widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
                                  help_text=_("如 [{\"point\": \"Imax\", \"error_pct\": 0.3}]；不填表示未做抽查检定"))
    note = forms.CharField(label=_("备注"), max_length=500, required=False,
                           widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def __init__(self, data: Any = None, *, instrument_id: int, is_scale: bool, prefix: str | None = None) -> None:
        super().__init__(data, initial={"instrument_id": instrument_id}, label_suffix="", prefix=prefix)
        self.is_scale = is_scale
        if is_scale:
            del self.fields["points_json"]
            for i in range(1, SCALE_POINTS + 1):
                self.fields[f"load_{i}"] = forms.DecimalField(
                    label=_("载荷（g）"), required=False, min_value=0, max_digits=12, decimal_places=3,
                    widget=forms.NumberInput(attrs={"inputmode": "decimal", "step": "any"}))
                self.fields[f"error_{i}"] = forms.DecimalField(
                    label=_("示值误差（g）"), required=False, max_digits=12, decimal_places=3,
                    widget=forms.NumberInput(attrs={"inputmode": "decimal", "step": "any"}))

    @property
    def point_rows(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        if not self.is_scale:
            return []
        return [(self[f"load_{i}"], self[f"error_{i}"]) for i in range(1, SCALE_POINTS + 1)]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        points: list[dict[str, Any]] = []
        if self.is_scale:
            for i in range(1, SCALE_POINTS + 1):
                load, error = data.get(f"load_{i}"), data.get(f"error_{i}")
                if (load is None) != (error is None):
                    self.add_error(f"error_{i}" if error is None else f"load_{i}", _("载荷和示值误差需同时填写。"))
                elif load is not None and error is not None:
                    points.append({"load_g": float(load), "error_g": float(error)})
        elif (raw := (data.get("points_json") or "").strip()):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(p, dict) for p in parsed):
                self.add_error("points_json", _("请填写检定点列表（JSON）。"))
            else:
                points = parsed
        if data.get("present") == "no" and (points or data.get("seal_intact") == "no"
                                            or (data.get("sw_hash_shown") or "").strip()):
            self.add_error("present", _("器具不在场时不能填写检查结果。"))
        data["points"] = points
        return data

    def to_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`jiliang.supervision.services.finding_record` (valid form only)."""
        d = self.cleaned_data
        present = d["present"] == "yes"
        seal = {"yes": True, "no": False}.get(d.get("seal_intact") or "") if present else None
        return {"instrument_id": d["instrument_id"], "present": present, "seal_intact": seal,
                "sw_hash_shown": (d.get("sw_hash_shown") or "").strip() if present else "",
                "points": d["points"] or None, "note": d.get("note") or ""}


class TaskCompleteForm(forms.Form):
    summary = forms.CharField(label=_("检查小结"), max_length=500, required=False,
                              widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, data: Any = None) -> None:
        super().__init__(data, label_suffix="")


class RectifyForm(forms.Form):
    """``POST /cases/<id>/rectify/``: what was done to correct, and when."""

    note = forms.CharField(label=_("整改情况"), max_length=500, widget=forms.Textarea(attrs={"rows": 3}))
    rectified_on = forms.DateField(label=_("整改完成日期"), required=False,
                                   widget=forms.DateInput(attrs={"type": "date"}, format=ISO_DATE))

    def __init__(self, data: Any = None) -> None:
        super().__init__(data, initial={"rectified_on": timezone.localdate()}, label_suffix="")


class ConflictForm(forms.Form):
    """``POST /conflicts/``: the organisation (by credit code) and the reason; a regulator also names the
    inspector (by user name)."""

    organization = forms.CharField(
        label=_("单位统一社会信用代码"), max_length=18,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}))
    reason = forms.CharField(label=_("回避事由"), max_length=300,
                             widget=forms.TextInput(attrs={"placeholder": _("如：近亲属在该单位任职")}))
    inspector = forms.CharField(label=_("执法人员用户名"), max_length=150, required=False,
                                help_text=_("监管人员代辖区执法人员申报时填写"))

    def __init__(self, data: Any = None, *, for_self: bool) -> None:
        super().__init__(data, label_suffix="")
        if for_self:
            del self.fields["inspector"]


class CreditConfigForm(forms.Form):
    """``POST /credit/config/``: weight and half-life per event kind, base, clamp bounds, thresholds A/B/C and
    draw shares per grade (in per cent).  The service validates the whole and names the faulty fields."""

    base = forms.FloatField(label=_("基础分"))
    clamp_low = forms.FloatField(label=_("最低分"))
    clamp_high = forms.FloatField(label=_("最高分"))
    threshold_A = forms.FloatField(label=_("A 级最低分"))
    threshold_B = forms.FloatField(label=_("B 级最低分"))
    threshold_C = forms.FloatField(label=_("C 级最低分"))
    note = forms.CharField(label=_("修改说明"), max_length=300, required=False)

    def __init__(self, data: Any, *, config: CreditConfig) -> None:
        initial: dict[str, Any] = {"base": config.base, "clamp_low": config.clamp[0], "clamp_high": config.clamp[1]}
        initial.update({f"threshold_{g}": t for g, t in zip(GRADES, config.thresholds, strict=False)})
        initial.update({f"share_{g}": _percent(config.shares[g]) for g in GRADES})
        super().__init__(data, initial=initial, label_suffix="")
        self.kinds = list(config.events)
        for kind, (w, hl) in config.events.items():
            self.fields[f"weight_{kind}"] = forms.FloatField(label=_("权重（分）"))
            self.fields[f"half_life_{kind}"] = forms.FloatField(label=_("半衰期（天）"))
            self.initial[f"weight_{kind}"] = w
            self.initial[f"half_life_{kind}"] = hl
        for g in GRADES:
            self.fields[f"share_{g}"] = forms.DecimalField(label=_("%(grade)s 级抽取比例（%%）") % {"grade": g},
                                                           max_digits=7, decimal_places=4)

    def event_rows(self) -> list[tuple[str, Any, Any]]:
        return [(k, self[f"weight_{k}"], self[f"half_life_{k}"]) for k in self.kinds]

    def share_fields(self) -> list[Any]:
        return [self[f"share_{g}"] for g in GRADES]

    def threshold_fields(self) -> list[Any]:
        return [self[f"threshold_{g}"] for g in GRADES[:3]]

    def to_config(self) -> dict[str, Any]:
        d = self.cleaned_data
        return {"events": {k: {"weight": d[f"weight_{k}"], "half_life_days": d[f"half_life_{k}"]} for k in self.kinds},
                "base": d["base"], "clamp": [d["clamp_low"], d["clamp_high"]],
                "thresholds": {g: d[f"threshold_{g}"] for g in GRADES[:3]},
                "shares": {g: float(d[f"share_{g}"]) / 100 for g in GRADES}}

    # service field names ("events.x.weight", "thresholds.B", "clamp.low", "shares.C") -> form fields
    def add_service_problem(self, field: str | None, reason: str) -> None:
        parts = (field or "").split(".")
        name: str | None = None
        if parts[0] == "events" and len(parts) == 3:
            name = f"weight_{parts[1]}" if parts[2] == "weight" else f"half_life_{parts[1]}"
        elif parts[0] == "thresholds" and len(parts) == 2:
            name = f"threshold_{parts[1]}"
        elif parts[0] == "shares" and len(parts) == 2:
            name = f"share_{parts[1]}"
        elif parts[0] == "clamp" and len(parts) == 2:
            name = f"clamp_{parts[1]}"
        elif parts[0] == "base":
            name = "base"
        self.add_error(name if name in self.fields else None, reason)
