"""Reads for accounts."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from jiliang.accounts.models import ApiToken
from jiliang.accounts.roles import Scope


def api_token_list(*, principal: Any) -> QuerySet[ApiToken]:
    """An organisation's tokens for its own people; every token for an administrator; none otherwise."""
    scope = Scope.of(principal)
    qs = ApiToken.objects.select_related("organization", "created_by").order_by("-created_at")
    if scope.is_admin:
        return qs
    if scope.org_id is None:
        return qs.none()
    return qs.filter(organization_id=scope.org_id)
