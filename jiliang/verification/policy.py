"""Who may see and record verifications.

- view: whoever may view the instrument, plus the institution that performed the verification.
- record (change): administrators; regulators in their region; a verification institute for instruments in
  its service region, as the institution itself; a manufacturer only factory verifications of
  instruments it made, as the institution itself (二检合一).
"""

from __future__ import annotations

from django.db.models import Q

from jiliang.accounts.roles import Role, Scope
from jiliang.registry import policy as rp


def verification_q(scope: Scope, action: str) -> Q | None:
    if action == rp.VIEW:
        inst = rp.instrument_q(scope, rp.VIEW)
        via_instrument = None if inst is None else _prefixed(inst)
        own = Q(institution_id=scope.org_id) if scope.org_id is not None and scope.role in (
            Role.INSTITUTE, Role.MANUFACTURER) else None
        if via_instrument is None:
            return own
        return via_instrument | own if own is not None else via_instrument
    if scope.role == Role.REGULATOR and scope.region_prefix:
        return Q(instrument__region__code__startswith=scope.region_prefix)
    if scope.role == Role.INSTITUTE and scope.region_prefix and scope.org_id is not None:
        return Q(instrument__region__code__startswith=scope.region_prefix, institution_id=scope.org_id)
    return None


def _prefixed(q: Q) -> Q:
    """Rewrite an instrument filter so it applies through ``instrument__``."""
    out = Q()
    out.connector, out.negated = q.connector, q.negated
    for child in q.children:
        if isinstance(child, Q):
            out.children.append(_prefixed(child))
        else:
            key, value = child  # type: ignore[misc]  # a Q's leaf children are (lookup, value) pairs
            out.children.append((f"instrument__{key}", value))
    return out


def may_record(scope: Scope, *, kind: str, institution_id: int, region_code: str, maker_id: int) -> str | None:
    """None when allowed, else the reason."""
    if scope.is_admin:
        return None
    if scope.role == Role.REGULATOR:
        if scope.region_prefix and region_code.startswith(scope.region_prefix):
            return None
        return "the instrument is outside your region"
    if scope.role == Role.INSTITUTE:
        if institution_id != scope.org_id:
            return "an institute records only its own verifications"
        if not (scope.region_prefix and region_code.startswith(scope.region_prefix)):
            return "the instrument is outside your service region"
        return None
    if scope.role == Role.MANUFACTURER:
        if kind != "factory":
            return "a manufacturer records only factory verifications"
        if institution_id != scope.org_id or maker_id != scope.org_id:
            return "a manufacturer records only its own instruments' factory verifications"
        return None
    return "your role may not record verifications"
