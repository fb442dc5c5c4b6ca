"""Main-menu entries for the inspection pages (检查任务, 案件), added after the entries of ``main_menu``.

This only decides which links a person is offered; what each page shows is decided by the selectors."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.translation import gettext as _

register = template.Library()

_TASK_ROLES = frozenset({"admin", "regulator", "inspector"})
_CASE_ROLES = _TASK_ROLES | {"market_entity", "utility"}


@register.simple_tag(takes_context=True)
def inspection_menu(context: template.Context) -> list[dict[str, Any]]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    role = "admin" if user.is_superuser else str(getattr(user, "role", ""))
    entries = []
    if role in _TASK_ROLES:
        entries.append(("supervision:task_list", _("检查任务")))
    if role in _CASE_ROLES:
        entries.append(("supervision:case_list", _("案件")))
    path = request.path if request is not None else ""
    return [{"url": reverse(name), "label": label, "active": path.startswith(reverse(name))} for name, label in entries]
