"""Who may see and change which registry rows: one function per model returning a filter.

A function returns ``None`` when the scope reaches no row.  ``apply`` is the only place that turns a
principal into a filtered queryset, so a view or API handler never re-implements permission checks.

Summary (view / change):

=================  ===================================  ==========================================
role               view                                 change
=================  ===================================  ==========================================
admin              everything                           everything
regulator          rows in its region (prefix)          rows in its region
inspector          rows in its region                   nothing in the registry
institute          rows in its service region           nothing in the registry
manufacturer       instruments it made, its own models  its own organisation and models
utility, market    instruments it owns or that stand    its own organisation, the places it
entity             at places it operates; those places  operates, the instruments it owns
public             nothing (the public pages use the    nothing
                   public selectors)
=================  ===================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.db.models import Exists, OuterRef, Q, QuerySet

from jiliang.accounts.roles import ORG_ROLES, Role, Scope

VIEW = "view"
CHANGE = "change"
ACTIONS = (VIEW, CHANGE)

M = TypeVar("M")
QS = TypeVar("QS", bound=QuerySet[Any])


def apply(qs: QS, rule: Callable[[Scope, str], Q | None], principal: Any, action: str) -> QS:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    scope = Scope.of(principal)
    if scope.is_admin:
        return qs
    q = rule(scope, action)
    if q is None:
        return qs.none()
    return qs.filter(q)


def _region(scope: Scope, field: str = "region__code") -> Q | None:
    if not scope.region_prefix:
        return None
    return Q(**{f"{field}__startswith": scope.region_prefix})


def instrument_q(scope: Scope, action: str) -> Q | None:
    if scope.role == Role.REGULATOR:
        return _region(scope)
    if scope.role in (Role.INSPECTOR, Role.INSTITUTE):
        return _region(scope) if action == VIEW else None
    if scope.org_id is None:
        return None
    if scope.role == Role.MANUFACTURER:
        return Q(maker_id=scope.org_id) if action == VIEW else None
    if scope.role in (Role.UTILITY, Role.MARKET_ENTITY):
        if action == VIEW:
            return Q(owner_id=scope.org_id) | Q(place__operator_id=scope.org_id)
        return Q(owner_id=scope.org_id)
    return None


def organization_q(scope: Scope, action: str) -> Q | None:
    if scope.role == Role.REGULATOR:
        return _region(scope)
    if scope.role in (Role.INSPECTOR, Role.INSTITUTE):
        return _region(scope) if action == VIEW else None
    if scope.role in ORG_ROLES and scope.org_id is not None:
        return Q(pk=scope.org_id)
    return None


def place_q(scope: Scope, action: str) -> Q | None:
    if scope.role == Role.REGULATOR:
        return _region(scope)
    if scope.role in (Role.INSPECTOR, Role.INSTITUTE):
        return _region(scope) if action == VIEW else None
    if scope.role in (Role.UTILITY, Role.MARKET_ENTITY) and scope.org_id is not None:
        if action == CHANGE:
            return Q(operator_id=scope.org_id)
        from jiliang.registry.models import Instrument

        owns_here = Instrument.objects.filter(place_id=OuterRef("pk"), owner_id=scope.org_id)
        return Q(operator_id=scope.org_id) | Q(Exists(owns_here))
    return None


def instrument_model_q(scope: Scope, action: str) -> Q | None:
    if action == VIEW:
        return Q() if scope.authenticated and scope.role != Role.PUBLIC else None
    if scope.role == Role.REGULATOR:
        return Q()
    if scope.role == Role.MANUFACTURER and scope.org_id is not None:
        return Q(maker_id=scope.org_id)
    return None


def may_write_instrument(scope: Scope, *, owner_id: int, region_code: str) -> bool:
    """Python mirror of ``instrument_q(scope, CHANGE)`` for a row that does not exist yet."""
    if scope.is_admin:
        return True
    if scope.role == Role.REGULATOR:
        return bool(scope.region_prefix) and region_code.startswith(scope.region_prefix or "\0")
    if scope.role in (Role.UTILITY, Role.MARKET_ENTITY):
        return scope.org_id is not None and owner_id == scope.org_id
    return False


def may_write_in_region(scope: Scope, *, region_code: str, operator_id: int | None = None) -> bool:
    """Creating organisations and places: administrators, regulators in their region, operators for
    their own places."""
    if scope.is_admin:
        return True
    if scope.role == Role.REGULATOR:
        return bool(scope.region_prefix) and region_code.startswith(scope.region_prefix or "\0")
    if operator_id is not None and scope.role in (Role.UTILITY, Role.MARKET_ENTITY):
        return scope.org_id == operator_id
    return False
