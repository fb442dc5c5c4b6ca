"""Who sees and handles alerts: administrators; regulators (view and decide) and inspectors (view) in
their region.  Owners, makers and institutes do not see alerts: they are leads for an investigation,
disclosed through inspections and cases, not before."""

from __future__ import annotations

from django.db.models import Q

from jiliang.accounts.roles import Role, Scope
from jiliang.registry.policy import VIEW


def alert_q(scope: Scope, action: str) -> Q | None:
    if not scope.region_prefix:
        return None
    if scope.role == Role.REGULATOR or (scope.role == Role.INSPECTOR and action == VIEW):
        return Q(region__code__startswith=scope.region_prefix)
    return None
