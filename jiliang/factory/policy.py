"""Who sees and changes factory-verification rows (二检合一).  Registered through
:func:`jiliang.registry.policy.apply`, the one place that turns a principal into a filtered queryset.

=================  ==============================================  =========================================
role               view                                            change
=================  ==============================================  =========================================
admin              everything                                      everything
regulator          manufacturers in its region; units and lots     authorizations, sampling, rectification
                   also when delivered to a utility in its region  of manufacturers in its region
inspector,         as the regulator                                nothing
institute
manufacturer       its own authorization, units, lots, recalls     applies, uploads, delivers, recalls its own
utility            lots and units delivered to it                  accepts and installs what was delivered to it
market entity,     nothing (the public list is a public endpoint)  nothing
public
=================  ==============================================  =========================================
"""

from __future__ import annotations

from django.db.models import Q

from jiliang.accounts.roles import Role, Scope
from jiliang.registry.policy import VIEW


def _maker_region(scope: Scope, field: str) -> Q | None:
    if not scope.region_prefix:
        return None
    return Q(**{f"{field}__region__code__startswith": scope.region_prefix})


def authorization_q(scope: Scope, action: str) -> Q | None:
    if scope.role == Role.REGULATOR or (scope.role in (Role.INSPECTOR, Role.INSTITUTE) and action == VIEW):
        return _maker_region(scope, "manufacturer")
    if scope.role == Role.MANUFACTURER and scope.org_id is not None:
        return Q(manufacturer_id=scope.org_id)
    return None


def unit_q(scope: Scope, action: str) -> Q | None:
    """Units and delivery lots: both carry ``manufacturer`` and ``utility``."""
    if scope.role == Role.REGULATOR or (scope.role in (Role.INSPECTOR, Role.INSTITUTE) and action == VIEW):
        if not scope.region_prefix:
            return None
        return (Q(manufacturer__region__code__startswith=scope.region_prefix)
                | Q(utility__region__code__startswith=scope.region_prefix))
    if scope.role == Role.MANUFACTURER and scope.org_id is not None:
        return Q(manufacturer_id=scope.org_id)
    if scope.role == Role.UTILITY and scope.org_id is not None:
        return Q(utility_id=scope.org_id)
    return None


def manufacturer_rows_q(scope: Scope, action: str) -> Q | None:
    """Batch statistics, samplings and recalls: rows of one manufacturer (a sampling also names the utility)."""
    if scope.role == Role.REGULATOR or (scope.role in (Role.INSPECTOR, Role.INSTITUTE) and action == VIEW):
        return _maker_region(scope, "manufacturer")
    if scope.role == Role.MANUFACTURER and scope.org_id is not None:
        return Q(manufacturer_id=scope.org_id)
    return None


def may_regulate(scope: Scope, *, region_code: str) -> bool:
    """Assess, grant, suspend, sample: administrators and regulators of the manufacturer's region."""
    if scope.is_admin:
        return True
    return scope.role == Role.REGULATOR and bool(scope.region_prefix) and region_code.startswith(
        scope.region_prefix or "\0")


def is_manufacturer(scope: Scope, org_id: int) -> bool:
    return scope.is_admin or (scope.role == Role.MANUFACTURER and scope.org_id == org_id)


def is_utility(scope: Scope, org_id: int | None) -> bool:
    return scope.is_admin or (scope.role == Role.UTILITY and org_id is not None and scope.org_id == org_id)
