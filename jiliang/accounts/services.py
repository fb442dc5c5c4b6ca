"""Writes for accounts: users and API tokens."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from jiliang.accounts.models import ApiToken, User, hash_token
from jiliang.accounts.roles import Role, Scope
from jiliang.core.changelog import log_change, snapshot
from jiliang.core.errors import JiliangError, NotFound, PermissionDenied

TOKEN_PREFIX = "jl_"  # noqa: S105 (a public prefix that marks Jiliang tokens, not a secret)


@transaction.atomic
def user_create(*, actor: Any, username: str, password: str, role: str, organization_id: int | None = None,
                region_code: str | None = None, email: str = "", is_superuser: bool = False) -> User:
    if role not in Role.values:
        raise JiliangError(f"unknown role {role!r}", code="validation_failed")
    user = User(username=username, role=role, organization_id=organization_id, region_id=region_code, email=email,
                is_superuser=is_superuser, is_staff=is_superuser or role == Role.ADMIN)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    log_change(actor=actor, obj=user, action="create")
    return user


@transaction.atomic
def api_token_create(*, actor: Any, name: str, organization_id: int, role: str,
                     region_code: str | None = None) -> tuple[ApiToken, str]:
    """Create a token for a machine client.  Returns the row and the raw token, which is shown once."""
    scope = Scope.of(actor)
    if not scope.is_admin and scope.org_id != organization_id:
        raise PermissionDenied("you may create tokens only for your own organization")
    if not scope.is_admin and role != scope.role:
        raise PermissionDenied("a token cannot have a role other than yours")
    if role in (Role.ADMIN, Role.PUBLIC):
        raise JiliangError("tokens cannot have the admin or public role", code="validation_failed")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tok = ApiToken.objects.create(name=name[:100], prefix=raw[:10], token_hash=hash_token(raw),
                                  organization_id=organization_id, role=role, region_id=region_code,
                                  created_by=actor if isinstance(actor, User) else None)
    log_change(actor=actor, obj=tok, action="create")
    return tok, raw


@transaction.atomic
def api_token_revoke(*, actor: Any, token_id: int) -> ApiToken:
    scope = Scope.of(actor)
    if scope.is_admin:
        qs = ApiToken.objects.all()
    elif scope.org_id is not None:
        qs = ApiToken.objects.filter(organization_id=scope.org_id)
    else:
        raise NotFound(f"token {token_id} not found")
    tok = qs.select_for_update().filter(pk=token_id).first()
    if tok is None:
        raise NotFound(f"token {token_id} not found")
    before = snapshot(tok)
    if tok.revoked_at is None:
        tok.revoked_at = timezone.now()
        tok.save(update_fields=["revoked_at"])
        log_change(actor=actor, obj=tok, action="update", before=before)
    return tok


def api_token_authenticate(raw: str) -> ApiToken | None:
    if not raw.startswith(TOKEN_PREFIX):
        return None
    tok = ApiToken.objects.active().select_related("organization").filter(token_hash=hash_token(raw)).first()
    if tok is None:
        return None
    now = timezone.now()
    if tok.last_used_at is None or (now - tok.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=tok.pk).update(last_used_at=now)
    return tok


def notifications_create(*, users: list[User], title: str, body: str = "", link: str = "") -> int:
    """Post the same in-app message to several people (called by other services inside their transaction).
    Not change-logged: a notification is a message, not a regulated record."""
    from jiliang.accounts.models import Notification

    Notification.objects.bulk_create([Notification(user=u, title=title[:200], body=body, link=link[:300])
                                      for u in users])
    return len(users)


@transaction.atomic
def notifications_mark_read(*, actor: Any, ids: list[int] | None = None) -> int:
    """Mark the actor's own notifications read (all unread ones when ``ids`` is None)."""
    from jiliang.accounts.models import Notification

    if not isinstance(actor, User):
        raise PermissionDenied("only a signed-in person has notifications")
    qs = Notification.objects.filter(user=actor, read_at__isnull=True)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.update(read_at=timezone.now())
