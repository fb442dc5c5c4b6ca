"""Who sees credit files and plans.

- credit: regulators and inspectors in their region (by the entity's region); an entity its own file
  (SPEC §1: a market entity "sees its credit file"); administrators everything.  Only regulators change.
- plans: regulators create and run plans in their region, inspectors view them; published plans are also
  public through the public bundle endpoint.
"""

from __future__ import annotations

from django.db.models import Q

from jiliang.accounts.roles import ORG_ROLES, Role, Scope
from jiliang.registry.policy import VIEW


def credit_q(scope: Scope, action: str) -> Q | None:
    if scope.role == Role.REGULATOR and scope.region_prefix:
        return Q(entity__region__code__startswith=scope.region_prefix)
    if action == VIEW and scope.role == Role.INSPECTOR and scope.region_prefix:
        return Q(entity__region__code__startswith=scope.region_prefix)
    if action == VIEW and scope.role in ORG_ROLES and scope.org_id is not None:
        return Q(entity_id=scope.org_id)
    return None


def plan_q(scope: Scope, action: str) -> Q | None:
    if not scope.region_prefix:
        return None
    if scope.role == Role.REGULATOR or (scope.role == Role.INSPECTOR and action == VIEW):
        return Q(region__code__startswith=scope.region_prefix)
    return None
