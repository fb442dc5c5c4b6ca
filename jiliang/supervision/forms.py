"""Forms of the inspection-plan pages: a new plan and the beacon of a draw.

Forms only parse and check the shape of input; what a person may create or run is decided by
:mod:`jiliang.supervision.services`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

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

    def __init__(self, data: Any, *, regions: list[Region], types: list[InstrumentType]) -> None:
        today = timezone.localdate()
        initial: dict[str, Any] = {"period_start": today, "period_end": today + dt.timedelta(days=DEFAULT_PERIOD_DAYS)}
        initial.update({f"share_{g}": _percent(DEFAULT_SHARES[g]) for g in GRADES})
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
