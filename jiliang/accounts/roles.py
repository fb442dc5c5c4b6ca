"""Roles of SPEC §1 and the scope a principal has (no model imports, so every app can use it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    ADMIN = "admin", _("系统管理员")
    REGULATOR = "regulator", _("监管人员")
    INSPECTOR = "inspector", _("执法人员")
    INSTITUTE = "institute", _("检定机构")
    MANUFACTURER = "manufacturer", _("制造单位")
    UTILITY = "utility", _("供水/供气/供电企业")
    MARKET_ENTITY = "market_entity", _("经营者")
    PUBLIC = "public", _("社会公众")


REGION_ROLES = frozenset({Role.REGULATOR, Role.INSPECTOR, Role.INSTITUTE})
ORG_ROLES = frozenset({Role.MANUFACTURER, Role.UTILITY, Role.MARKET_ENTITY})


def region_prefix(code: str) -> str:
    """GB/T 2260 codes nest by prefix: province ``44`` 0000, city ``4403`` 00, district ``440305``.

    >>> region_prefix("440300"), region_prefix("440000"), region_prefix("440305")
    ('4403', '44', '440305')
    """
    code = code.strip()
    while code.endswith("00") and len(code) > 2:
        code = code[:-2]
    return code


@dataclass(frozen=True, slots=True)
class Scope:
    """What a principal (a person or an API token) may reach: role, organisation and region prefix."""

    role: str
    org_id: int | None
    region_prefix: str | None
    is_admin: bool = False
    authenticated: bool = True

    @classmethod
    def of(cls, principal: Any) -> Scope:
        if principal is None or not getattr(principal, "is_authenticated", False):
            return cls(role=Role.PUBLIC, org_id=None, region_prefix=None, authenticated=False)
        scope = getattr(principal, "scope", None)
        if isinstance(scope, Scope):
            return scope
        role = getattr(principal, "role", Role.PUBLIC)
        is_admin = bool(getattr(principal, "is_superuser", False)) or role == Role.ADMIN
        region = getattr(principal, "region_id", None)
        return cls(
            role=Role.ADMIN if is_admin else role,
            org_id=getattr(principal, "organization_id", None),
            region_prefix=region_prefix(region) if region else None,
            is_admin=is_admin,
        )

    @property
    def is_regional(self) -> bool:
        return self.role in REGION_ROLES and self.region_prefix is not None
