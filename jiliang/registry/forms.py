"""Forms of the registry pages: list filters, the instrument edit form and the bulk-import upload.

Forms only parse and check the shape of input.  What a person may see or change is decided by the
selectors and services they feed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from jiliang.core.errors import Problem
from jiliang.portal.templatetags.jiliang_ui import localized_name
from jiliang.registry.choices import STATUS_TRANSITIONS, InstrumentStatus, OrgKind, PlaceKind
from jiliang.registry.models import Instrument, InstrumentType, Region
from jiliang.registry.selectors import InstrumentFilters
from jiliang.registry.tabular import FORMATS

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


Choices = list[tuple[str, Any]]


def _set_choices(form: forms.Form, name: str, choices: Choices) -> None:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    field.choices = choices


def _type_choices(types: list[InstrumentType]) -> Choices:
    return [("", _("全部类型")), *((t.key, localized_name(t.name_zh, t.name_en)) for t in types)]


def _district_choices(districts: list[Region]) -> Choices:
    return [("", _("全部区县")), *((r.code, localized_name(r.name, r.name_en)) for r in districts)]


class InstrumentFilterForm(forms.Form):
    """``/instruments/?q=&type=&status=&district=``.  An unknown value in one field drops that filter only."""

    q = forms.CharField(
        label=_("关键词"), required=False, max_length=100,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("器具编号、出厂编号或使用单位")}))
    type = forms.ChoiceField(label=_("器具类型"), required=False)
    status = forms.ChoiceField(label=_("状态"), required=False)
    district = forms.ChoiceField(label=_("区县"), required=False)

    def __init__(self, data: Any, *, types: list[InstrumentType], districts: list[Region]) -> None:
        super().__init__(data, label_suffix="")
        _set_choices(self, "type", _type_choices(types))
        _set_choices(self, "status", [("", _("全部状态")), *InstrumentStatus.choices])
        _set_choices(self, "district", _district_choices(districts))

    def to_filters(self) -> InstrumentFilters:
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return InstrumentFilters(q=(data.get("q") or "").strip(), instrument_type=data.get("type") or "",
                                 status=data.get("status") or "", region=data.get("district") or "")

    @property
    def active(self) -> bool:
        """True when any filter narrows the list."""
        f = self.to_filters()
        return bool(f.q or f.instrument_type or f.status or f.region)


class _KindDistrictFilterForm(forms.Form):
    """Keyword, kind and district filters (organisations and places share them)."""

    q = forms.CharField(label=_("关键词"), required=False, max_length=100,
                        widget=forms.TextInput(attrs={"type": "search"}))
    kind = forms.ChoiceField(required=False)
    district = forms.ChoiceField(label=_("区县"), required=False)

    placeholder: Any = ""
    kind_label: Any = ""
    all_kinds: Any = ""
    kind_choices: Any = ()

    def __init__(self, data: Any, *, districts: list[Region]) -> None:
        super().__init__(data, label_suffix="")
        self.fields["q"].widget.attrs["placeholder"] = self.placeholder
        self.fields["kind"].label = self.kind_label
        _set_choices(self, "kind", [("", self.all_kinds), *self.kind_choices])
        _set_choices(self, "district", _district_choices(districts))

    def values(self) -> dict[str, str]:
        """Keyword arguments for the list selector (``q``, ``kind``, ``region``)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {"q": (data.get("q") or "").strip(), "kind": data.get("kind") or "",
                "region": data.get("district") or ""}


class OrganizationFilterForm(_KindDistrictFilterForm):
    """``/organizations/?q=&kind=&district=``."""

    placeholder = _("名称或统一社会信用代码")
    kind_label = _("单位类别")
    all_kinds = _("全部类别")
    kind_choices = OrgKind.choices


class PlaceFilterForm(_KindDistrictFilterForm):
    """``/places/?q=&kind=&district=``."""

    placeholder = _("场所名称、编号或地址")
    kind_label = _("场所类型")
    all_kinds = _("全部类型")
    kind_choices = PlaceKind.choices


class InstrumentEditForm(forms.Form):
    """The filed data of an instrument that may change over its life.  Identity (device id, maker, serial,
    model) never changes.  The status offers the current one and the lifecycle moves allowed from it."""

    status = forms.ChoiceField(label=_("状态"))
    place_key = forms.CharField(label=_("使用场所编号"), max_length=64, required=False,
                                help_text=_("场所的登记编号；迁移器具时填写新场所的编号"))
    install_date = forms.DateField(label=_("安装日期"), required=False,
                                   widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    tank = forms.CharField(label=_("油罐"), max_length=32, required=False,
                           help_text=_("仅加油枪：所连接油罐在场所内的编号"))
    sw_id = forms.CharField(label=_("软件标识"), max_length=64, required=False)
    sw_hash = forms.CharField(label=_("软件校验和"), max_length=128, required=False)

    # Service problem fields that are named differently on this form.
    FIELD_ALIASES = {"place": "place_key"}

    def __init__(self, data: Any = None, *, instrument: Instrument) -> None:
        initial = {
            "status": instrument.status,
            "place_key": instrument.place.key if instrument.place_id and instrument.place else "",
            "install_date": instrument.install_date,
            "tank": instrument.tank,
            "sw_id": instrument.sw_id,
            "sw_hash": instrument.sw_hash,
        }
        super().__init__(data, initial=initial)
        self.instrument = instrument
        allowed = [instrument.status, *sorted(STATUS_TRANSITIONS[instrument.status])]
        labels = dict(InstrumentStatus.choices)
        _set_choices(self, "status", [(s, labels[s]) for s in InstrumentStatus.values if s in allowed])
        if instrument.instrument_type_id != "fuel_dispenser":
            del self.fields["tank"]

    def clean_install_date(self) -> dt.date | None:
        value: dt.date | None = self.cleaned_data.get("install_date")
        if value is None and self.initial.get("install_date") is not None:
            raise forms.ValidationError(_("已登记的安装日期不能清空"))
        return value

    def changes(self) -> dict[str, Any]:
        """Keyword arguments for ``services.instrument_update``: only what the person changed."""
        return {name: self.cleaned_data[name] for name in self.changed_data if name in self.cleaned_data}

    def add_problems(self, problems: list[Problem], message: str) -> None:
        """Show a service's refusal: each problem beside its field, the rest above the form."""
        if not problems:
            self.add_error(None, message)
        for p in problems:
            name = self.FIELD_ALIASES.get(p.field or "", p.field or "")
            self.add_error(name if name in self.fields else None, p.reason)


class ImportUploadForm(forms.Form):
    """Step 1 of a bulk import: what kind of rows and the file (CSV, XLSX or JSON; SPEC 3.5 columns)."""

    KIND_CHOICES = (
        ("organizations", _("单位")),
        ("places", _("场所")),
        ("instruments", _("计量器具")),
    )

    kind = forms.ChoiceField(label=_("导入内容"), choices=KIND_CHOICES)
    file = forms.FileField(
        label=_("文件"), help_text=_("CSV（UTF-8，带表头）、Excel（.xlsx，第一个工作表）或 JSON 数组"))

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if Path(upload.name).suffix.lower() not in FORMATS:
            raise forms.ValidationError(_("不支持的文件类型：请上传 .csv、.xlsx 或 .json 文件"))
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("文件过大：不能超过 20 MB"))
        return upload


class ImportConfirmForm(forms.Form):
    """Step 2: import the previewed file, all rows or only the valid ones."""

    MODE_CHOICES = (
        ("all", _("全部导入：有任何错误行则整批不导入")),
        ("skip_invalid", _("只导入有效行，跳过错误行")),
    )

    token = forms.CharField(widget=forms.HiddenInput, max_length=64)
    mode = forms.ChoiceField(label=_("导入方式"), choices=MODE_CHOICES, initial="all", widget=forms.RadioSelect)
