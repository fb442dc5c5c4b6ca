"""Template helpers shared by every Jiliang page: localised reference names and status badges.

Load with ``{% load jiliang_ui %}``.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _

register = template.Library()

# Badge colour per instrument status (CSS classes in static/jiliang/app.css).
_STATUS_TONE = {
    "in_stock": "neutral",
    "installed": "info",
    "in_service": "ok",
    "suspended": "warn",
    "retired": "muted",
}


def is_english() -> bool:
    """True when the active language is English (the source strings are Chinese)."""
    return (get_language() or "").lower().startswith("en")


def localized_name(zh: str, en: str) -> str:
    """The English name under English when there is one, else the Chinese name."""
    return en if en and is_english() else zh


@register.filter
def localname(obj: Any) -> str:
    """The display name of a region or instrument type in the active language.

    Regions keep ``name``/``name_en``, instrument types ``name_zh``/``name_en``; anything else is shown
    with ``str()``.
    """
    if obj is None:
        return ""
    zh = getattr(obj, "name_zh", None) or getattr(obj, "name", None) or str(obj)
    return localized_name(str(zh), str(getattr(obj, "name_en", "") or ""))


@register.filter
def status_tone(status: str) -> str:
    """The badge tone for an instrument status value."""
    return _STATUS_TONE.get(str(status), "neutral")


@register.simple_tag
def field_label(model: Any, field_name: str) -> str:
    """A model field's verbose name (translated), for table headers and detail rows."""
    return str(model._meta.get_field(field_name).verbose_name)


# The main menu per role.  This only decides which links a person is offered; what each page shows or
# accepts is decided by the selectors and services (row-level scope), never by the menu.
_BASE_MENU = ("analytics:dashboard", "registry:instrument_list", "registry:organization_list",
              "registry:place_list")
_IMPORT_ROLES = frozenset({"admin", "regulator", "utility", "market_entity"})
# Alerts are leads for an investigation: offered to the people who triage or act on them (C4).
_ALERT_ROLES = frozenset({"admin", "regulator", "inspector"})
# Inspection plans (双随机): regulators run them, inspectors carry them out (C6); tasks likewise (C7).
_PLAN_ROLES = frozenset({"admin", "regulator", "inspector"})
# Factory verification (二检合一): everyone in the chain -- makers, utilities, institutes, regulators.
_FACTORY_ROLES = frozenset({"admin", "regulator", "inspector", "institute", "manufacturer", "utility"})
# Cases (案件) concern the inspected entities too.
_CASE_ROLES = _PLAN_ROLES | {"market_entity", "utility"}


@register.simple_tag(takes_context=True)
def main_menu(context: template.Context) -> list[dict[str, Any]]:
    """The menu entries for the signed-in person: ``url``, ``label`` and ``active``."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    labels = {
        "analytics:dashboard": _("概览"),
        "registry:instrument_list": _("计量器具"),
        "registry:organization_list": _("单位"),
        "registry:place_list": _("场所"),
        "registry:import": _("批量导入"),
        "monitoring:alert_list": _("预警"),
        "supervision:plan_list": _("抽查计划"),
        "verification:due_list": _("到期清单"),
        "supervision:task_list": _("检查任务"),
        "supervision:case_list": _("案件"),
        "factory:home": _("二检合一"),
        "supervision:credit_config": _("信用规则"),
    }
    names = list(_BASE_MENU)
    role = "admin" if user.is_superuser else str(getattr(user, "role", ""))
    if role in _ALERT_ROLES:
        names.append("monitoring:alert_list")
    if role in _PLAN_ROLES:
        names.append("supervision:plan_list")
    if role in _PLAN_ROLES:
        names.append("supervision:task_list")
    if role in _CASE_ROLES:
        names.append("supervision:case_list")
    if role != "public":
        names.append("verification:due_list")
    if role in _FACTORY_ROLES:
        names.append("factory:home")
    if role in ("admin", "regulator"):
        names.append("supervision:credit_config")
    if role in _IMPORT_ROLES:
        names.append("registry:import")
    path = request.path if request is not None else ""
    items = []
    for name in names:
        url = reverse(name)
        active = path == url if url == "/" else path.startswith(url)
        items.append({"url": url, "label": labels[name], "active": active})
    return items


@register.simple_tag(takes_context=True)
def unread_notifications(context: template.Context) -> int:
    """How many in-app messages the signed-in person has not read (0 when signed out)."""
    from jiliang.accounts.selectors import unread_count

    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return 0
    return unread_count(principal=user)
