"""Reads for accounts."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from jiliang.accounts.models import ApiToken, Notification, User
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


def notification_list(*, principal: Any, unread_only: bool = False) -> QuerySet[Notification]:
    """A person's own in-app messages, newest first (nobody reads anyone else's)."""
    if not isinstance(principal, User) or not principal.is_authenticated:
        return Notification.objects.none()
    qs = Notification.objects.filter(user=principal)
    return qs.filter(read_at__isnull=True) if unread_only else qs


def unread_count(*, principal: Any) -> int:
    return notification_list(principal=principal, unread_only=True).count()
