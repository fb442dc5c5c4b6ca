"""Forms of the 二检合一 pages.  They only shape what a person typed into the services' arguments; every rule
(conditions, scope, lifecycle, who may act) is the services' and the state machines' (a refusal comes back
as the service's ``JiliangError`` and is shown on the field it names)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from jiliang.core.errors import JiliangError
from jiliang.engine import factory as rules
from jiliang.engine.sampling import LEVELS, aql_values

SCOPE_ROWS = 3  # scope lines offered on the application form (type + DN range)


class UploadForm(forms.Form):
    file = forms.FileField(label=_("出厂检定数据文件"), help_text=_("CSV、Excel（.xlsx）或 JSON；第一行为列名"))


def _choices(form: forms.Form, name: str) -> forms.ChoiceField:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    return field


def show_refusal(form: forms.Form, exc: JiliangError, fields: dict[str, str] | None = None) -> None:
    """Put a service's refusal on the form: each detail on the field it names (``fields`` maps a service
    field, or its prefix before ``.``/``[``, to a form field), the rest and the message as form errors."""
    fields = fields or {}
    placed = False
    for p in exc.details:
        name = p.field or ""
        target = fields.get(name) or fields.get(name.split(".", 1)[0].split("[", 1)[0])
        if target is None and name in form.fields:
            target = name
        reason = f"{p.reason}（{p.value}）" if getattr(p, "value", None) not in (None, "") else p.reason
        if target is not None and target in form.fields:
            form.add_error(target, reason)
            placed = True
        else:
            form.add_error(None, f"{name}: {reason}" if name else reason)
    if not placed:
        form.add_error(None, exc.message)


# ----------------------------------------------------------------------------------------- authorizations

class AuthorizationFilterForm(forms.Form):
    status = forms.ChoiceField(label=_("状态"), required=False)
    maker = forms.TypedChoiceField(label=_("生产企业"), required=False, coerce=int, empty_value=None)

    def __init__(self, *args: Any, statuses: list[tuple[str, Any]], makers: list[tuple[int, str]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "status").choices = [("", _("全部状态")), *statuses]
        _choices(self, "maker").choices = [("", _("全部企业")), *makers]


class ApplyForm(forms.Form):
    """The application (申请): evidence per condition (blank = not met), metrologists, the scope rows."""

    registered_metrologists = forms.IntegerField(label=_("注册计量师（或工程师以上）人数"), min_value=0, max_value=999)

    def __init__(self, *args: Any, types: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for c in rules.CONDITIONS:
            required = c.key in rules.REQUIRED_CONDITIONS
            self.fields[f"cond_{c.key}"] = forms.CharField(
                label=c.title, required=False, max_length=200,
                help_text=(_("必备条件") + " · " if required else "") + c.source,
                widget=forms.TextInput(attrs={"placeholder": _("证明材料，如证书编号；不具备请留空")}))
        for i in range(SCOPE_ROWS):
            self.fields[f"scope_type_{i}"] = forms.ChoiceField(label=_("器具类型"), required=False,
                                                               choices=[("", "—"), *types])
            self.fields[f"scope_dn_min_{i}"] = forms.IntegerField(label=_("DN 下限"), required=False, min_value=1)
            self.fields[f"scope_dn_max_{i}"] = forms.IntegerField(label=_("DN 上限"), required=False, min_value=1)

    def condition_fields(self) -> list[Any]:
        return [self[f"cond_{c.key}"] for c in rules.CONDITIONS]

    def scope_rows(self) -> list[tuple[Any, Any, Any]]:
        return [(self[f"scope_type_{i}"], self[f"scope_dn_min_{i}"], self[f"scope_dn_max_{i}"])
                for i in range(SCOPE_ROWS)]

    def error_fields(self) -> dict[str, str]:
        """Service field names → form fields (``conditions.standards`` → ``cond_standards``, …)."""
        out = {f"conditions.{c.key}": f"cond_{c.key}" for c in rules.CONDITIONS}
        out["scope"] = "scope_type_0"
        for i in range(SCOPE_ROWS):
            out[f"scope[{i}]"] = f"scope_type_{i}"
            out[f"scope[{i}].instrument_type"] = f"scope_type_{i}"
            out[f"scope[{i}].dn_min"] = f"scope_dn_min_{i}"
            out[f"scope[{i}].dn_max"] = f"scope_dn_max_{i}"
        return out

    def to_kwargs(self) -> dict[str, Any]:
        d = self.cleaned_data
        conditions = {c.key: d[f"cond_{c.key}"].strip() for c in rules.CONDITIONS if d[f"cond_{c.key}"].strip()}
        scope = []
        for i in range(SCOPE_ROWS):
            t, lo, hi = d.get(f"scope_type_{i}"), d.get(f"scope_dn_min_{i}"), d.get(f"scope_dn_max_{i}")
            if t or lo is not None or hi is not None:
                scope.append({"instrument_type": t or "", "dn_min": lo, "dn_max": hi})
        return {"conditions": conditions, "registered_metrologists": d["registered_metrologists"], "scope": scope}


# The lifecycle events a page offers, their button text, and whether the decision needs a written reason.
EVENT_LABELS = {"assess": _("受理并开始考核"), "grant": _("考核通过，授权"), "reject": _("考核不通过"),
                "apply_renewal": _("申请延续"), "renew": _("延续有效期"), "suspend": _("暂停授权"),
                "reinstate": _("恢复授权"), "revoke": _("取消授权")}
REASON_REQUIRED = frozenset({"reject", "suspend", "revoke"})


class TransitionForm(forms.Form):
    event = forms.ChoiceField(choices=[(e, e) for e in rules.AUTH_EVENTS], widget=forms.HiddenInput)
    note = forms.CharField(label=_("意见/原因"), required=False, max_length=500,
                           widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self) -> dict[str, Any]:
        d = super().clean() or {}
        if d.get("event") in REASON_REQUIRED and not (d.get("note") or "").strip():
            self.add_error("note", _("请填写原因：该决定会记录并公示。"))
        return d


class RectificationForm(forms.Form):
    passed = forms.TypedChoiceField(label=_("整改结论"), coerce=lambda v: v == "1",
                                    choices=[("1", _("整改合格，恢复销售")), ("0", _("整改不合格，停止试点并公示"))],
                                    widget=forms.RadioSelect)
    note = forms.CharField(label=_("说明"), required=False, max_length=300)


# ---------------------------------------------------------------------------------------- lots, installing

class LotFilterForm(forms.Form):
    status = forms.ChoiceField(label=_("状态"), required=False)

    def __init__(self, *args: Any, statuses: list[tuple[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "status").choices = [("", _("全部状态")), *statuses]


class RejectForm(forms.Form):
    reason = forms.CharField(label=_("拒收原因"), max_length=300, widget=forms.Textarea(attrs={"rows": 2}))


class SamplingOpenForm(forms.Form):
    aql = forms.ChoiceField(label="AQL", initial="1.0")
    level = forms.ChoiceField(label=_("检验水平"), initial="II", choices=[(v, v) for v in LEVELS])
    seed = forms.CharField(label=_("抽样种子"), required=False, max_length=64,
                           help_text=_("留空则随机生成；记录在案，可复现抽样"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "aql").choices = [(v, v) for v in aql_values()]


class InstallForm(forms.Form):
    manufacturer = forms.TypedChoiceField(label=_("制造单位"), coerce=int)
    serial = forms.CharField(label=_("出厂编号"), max_length=64)
    install_date = forms.DateField(label=_("安装日期"), widget=forms.DateInput(attrs={"type": "date"}))
    reading = forms.FloatField(label=_("安装时读数"), initial=0.0)
    place = forms.ChoiceField(label=_("场所"), required=False)
    address = forms.CharField(label=_("安装地址"), required=False, max_length=300,
                              help_text=_("选择场所或填写地址"))

    def __init__(self, *args: Any, makers: list[tuple[int, str]], places: list[tuple[str, str]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "manufacturer").choices = makers
        _choices(self, "place").choices = [("", "—"), *places]
        self.fields["install_date"].initial = timezone.localdate()

    def to_kwargs(self) -> dict[str, Any]:
        d = self.cleaned_data
        return {"manufacturer_id": d["manufacturer"], "serial": d["serial"].strip(), "install_date": d["install_date"],
                "reading": d["reading"], "address": d["address"], "place_key": d["place"]}

    ERROR_FIELDS = {"place_key": "place", "manufacturer_id": "manufacturer"}


# ------------------------------------------------------------------------------------------------ sampling

def parse_points(text: str) -> list[dict[str, Any]]:
    """``"Q1=1.2 Q2=-0.5 Q3=0.3"`` (spaces, commas or semicolons between) → the service's point list."""
    out: list[dict[str, Any]] = []
    for part in text.replace("，", " ").replace(",", " ").replace(";", " ").replace("；", " ").split():
        label, sep, value = part.partition("=")
        if not sep or not label:
            raise ValidationError(_("格式应为 检定点=误差%%，如 Q1=1.2 Q3=-0.4：%(part)s"), params={"part": part})
        try:
            err = float(value)
        except ValueError:
            raise ValidationError(_("误差不是数字：%(part)s"), params={"part": part}) from None
        out.append({"point": label.strip(), "error_pct": err})
    if not out:
        raise ValidationError(_("请填写该台的检定结果"))
    return out


class SamplingResultsForm(forms.Form):
    """One text field per drawn serial: its test points as ``Q1=… Q2=… Q3=…`` (errors in %)."""

    def __init__(self, *args: Any, serials: list[str], labels: dict[str, list[str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.serials = serials
        for k, serial in enumerate(serials):
            hint = " ".join(f"{p}=" for p in labels.get(serial, [])) or "Q1= Q2= Q3="
            self.fields[f"r_{k}"] = forms.CharField(label=serial, max_length=500,
                                                    widget=forms.TextInput(attrs={"placeholder": hint,
                                                                                  "data-serial": serial}))

    def clean(self) -> dict[str, Any]:
        d = super().clean() or {}
        for k in range(len(self.serials)):
            text = d.get(f"r_{k}")
            if text:
                try:
                    d[f"r_{k}"] = parse_points(text)
                except ValidationError as exc:
                    self.add_error(f"r_{k}", exc)
        return d

    def results(self) -> dict[str, list[dict[str, Any]]]:
        return {s: self.cleaned_data[f"r_{k}"] for k, s in enumerate(self.serials)}

    def error_fields(self) -> dict[str, str]:
        return {f"results.{s}": f"r_{k}" for k, s in enumerate(self.serials)}


# --------------------------------------------------------------------------------------------------- recall

class RecallForm(forms.Form):
    model = forms.TypedChoiceField(label=_("型号"), coerce=int)
    batch = forms.CharField(label=_("生产批次"), max_length=64,
                            widget=forms.TextInput(attrs={"list": "batch-options"}))
    reason = forms.CharField(label=_("召回原因"), max_length=300, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, models: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "model").choices = models


class ReplaceForm(forms.Form):
    serial = forms.CharField(label=_("被召回的出厂编号"), max_length=64)
    replacement_serial = forms.CharField(label=_("更换为（出厂编号）"), max_length=64)
