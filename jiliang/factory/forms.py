"""The upload form of the factory workbench."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class UploadForm(forms.Form):
    file = forms.FileField(label=_("出厂检定数据文件"), help_text=_("CSV、Excel（.xlsx）或 JSON；第一行为列名"))
