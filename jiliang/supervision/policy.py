"""Who sees credit files and plans.

- credit: regulators and inspectors in their region (by the entity's region); an entity its own file
  (SPEC §1: a market entity "sees its credit file"); administrators everything.  Only regulators change.
- credit configuration: every signed-in person views it; administrators and city regulators change it.
- plans: regulators create and run plans in their region, inspectors view them; published plans are also
  public through the public bundle endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def credit_explanation_q(scope: Scope, action: str) -> Q | None:
    """Who reads an entity's credit explanation (信用档案说明), on :class:`Organization` rows: regulators of
    the entity's region and the entity itself; nobody else (administrators see everything, as everywhere)."""
    if action != VIEW:
        return None
    if scope.role == Role.REGULATOR and scope.region_prefix:
        return Q(region__code__startswith=scope.region_prefix)
    if scope.role in ORG_ROLES and scope.org_id is not None:
        return Q(pk=scope.org_id)
    return None


def credit_config_q(scope: Scope, action: str) -> Q | None:
    """The credit configuration (信用评价配置) is transparent: every signed-in person sees it (an entity sees
    the weights and thresholds on its explanation page anyway).  Administrators and city regulators (a
    regulator whose region is a city or province, not a district) change it."""
    if not scope.authenticated:
        return None
    if action == VIEW:
        return Q()
    if scope.role == Role.REGULATOR and scope.region_prefix and len(scope.region_prefix) <= 4:
        return Q()
    return None


def plan_q(scope: Scope, action: str) -> Q | None:
    if not scope.region_prefix:
        return None
    if scope.role == Role.REGULATOR or (scope.role == Role.INSPECTOR and action == VIEW):
        return Q(region__code__startswith=scope.region_prefix)
    return None


# ------------------------------------------------------------------------------------------ inspections
#
# - tasks (检查任务) and their findings: an inspector sees and works on the tasks it was drawn for (only the
#   two assigned inspectors record findings); regulators see the tasks on entities in their region; a market
#   entity sees its own tasks once completed (the inspection itself is unannounced).
# - cases (案件): regulators see and follow up cases in their region, inspectors the cases of their tasks, an
#   entity its own (and may report its rectification, which a regulator or inspector then confirms).
# - conflict declarations (利益冲突声明): an inspector its own; regulators those of inspectors in their region.


def _assigned(user_id: int | None, prefix: str = "") -> Q | None:
    if user_id is None:
        return None
    return Q(**{f"{prefix}inspector_1_id": user_id}) | Q(**{f"{prefix}inspector_2_id": user_id})


def task_q(scope: Scope, action: str, user_id: int | None = None, prefix: str = "") -> Q | None:
    if scope.role == Role.INSPECTOR:
        return _assigned(user_id, prefix)
    if scope.role == Role.REGULATOR and scope.region_prefix and action == VIEW:
        return Q(**{f"{prefix}entity__region__code__startswith": scope.region_prefix})
    if scope.role in ORG_ROLES and scope.org_id is not None and action == VIEW:
        return Q(**{f"{prefix}entity_id": scope.org_id, f"{prefix}status": "completed"})
    return None


def finding_q(scope: Scope, action: str, user_id: int | None = None) -> Q | None:
    return task_q(scope, action, user_id, prefix="task__")


def case_q(scope: Scope, action: str, user_id: int | None = None) -> Q | None:
    if scope.role == Role.INSPECTOR:
        return _assigned(user_id, "task__")
    if scope.role == Role.REGULATOR and scope.region_prefix:
        return Q(entity__region__code__startswith=scope.region_prefix)
    if scope.role in ORG_ROLES and scope.org_id is not None:
        return Q(entity_id=scope.org_id)
    return None


def conflict_q(scope: Scope, action: str, user_id: int | None = None) -> Q | None:
    if scope.role == Role.INSPECTOR:
        return Q(inspector_id=user_id) if user_id is not None else None
    if scope.role == Role.REGULATOR and scope.region_prefix:
        return Q(inspector__region__code__startswith=scope.region_prefix)
    return None


_RULES: dict[str, Callable[..., Q | None]] = {"task_q": task_q, "finding_q": finding_q, "case_q": case_q,
                                              "conflict_q": conflict_q}


def bound(rule_name: str, principal: Any) -> Callable[[Scope, str], Q | None]:
    """The rule with the person's own user id bound (an API token has none: it is no one's inspector)."""
    rule = _RULES[rule_name]
    user_id = getattr(principal, "pk", None) if getattr(principal, "is_authenticated", False) else None
    return lambda scope, action: rule(scope, action, user_id)
