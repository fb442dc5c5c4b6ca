"""Users, roles and API tokens (账户、角色、接口令牌)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from jiliang.accounts.roles import Role, Scope


class User(AbstractUser):
    """A person.  Role plus organisation (and region for regulators, inspectors, institutes) set scope."""

    role = models.CharField(_("角色"), max_length=20, choices=Role.choices, default=Role.PUBLIC)
    organization = models.ForeignKey(
        "registry.Organization", verbose_name=_("所属单位"), null=True, blank=True,
        on_delete=models.PROTECT, related_name="users",
    )
    region = models.ForeignKey(
        "registry.Region", verbose_name=_("管辖区域"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="users", help_text=_("监管、执法人员和检定机构的管辖范围；市级账户可见全市"),
    )

    class Meta:
        verbose_name = _("用户")
        verbose_name_plural = _("用户")
        ordering = ["username"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(role__in=["regulator", "inspector", "institute"]) | models.Q(region__isnull=False),
                name="user_regional_role_has_region",
            ),
            models.CheckConstraint(
                condition=~models.Q(role__in=["manufacturer", "utility", "market_entity", "institute"])
                | models.Q(organization__isnull=False),
                name="user_org_role_has_organization",
            ),
        ]

    @property
    def scope(self) -> Scope:
        if not self.is_authenticated:
            return Scope.of(None)
        is_admin = self.is_superuser or self.role == Role.ADMIN
        return Scope(
            role=Role.ADMIN if is_admin else self.role,
            org_id=self.organization_id,
            region_prefix=_prefix(self.region_id),
            is_admin=is_admin,
        )


def _prefix(code: str | None) -> str | None:
    from jiliang.accounts.roles import region_prefix

    return region_prefix(code) if code else None


def hash_token(raw: str) -> str:
    """API tokens are random 256-bit secrets, so a plain SHA-256 is the right hash (no stretching)."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        live = models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        return self.filter(revoked_at__isnull=True).filter(live)


class ApiToken(models.Model):
    """A machine client's token: shown once at creation, stored as its SHA-256, scoped to one organisation."""

    name = models.CharField(_("名称"), max_length=100)
    prefix = models.CharField(_("前缀"), max_length=12, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey("registry.Organization", verbose_name=_("所属单位"), on_delete=models.PROTECT,
                                     related_name="api_tokens")
    role = models.CharField(_("角色"), max_length=20, choices=Role.choices)
    region = models.ForeignKey("registry.Region", verbose_name=_("管辖区域"), null=True, blank=True,
                               on_delete=models.PROTECT)
    created_by = models.ForeignKey(User, verbose_name=_("创建人"), null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(_("创建时间"), default=timezone.now)
    expires_at = models.DateTimeField(_("过期时间"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("最近使用"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("吊销时间"), null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("接口令牌")
        verbose_name_plural = _("接口令牌")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class TokenPrincipal:
    """What an authenticated API token acts as: behaves enough like a user for scope and the change log."""

    is_authenticated = True
    is_superuser = False

    def __init__(self, token: ApiToken) -> None:
        self.token = token
        self.pk: Any = None
        self.username = f"token:{token.prefix}"
        self.role = token.role
        self.organization_id = token.organization_id
        self.region_id = token.region_id

    @property
    def scope(self) -> Scope:
        return Scope(role=self.role, org_id=self.organization_id, region_prefix=_prefix(self.region_id))


class SystemPrincipal:
    """The operator at the server's own command line (``jiliang import`` …): administrator scope, logged
    under its own label so the change log tells command-line changes from people's."""

    is_authenticated = True
    is_superuser = True
    role = Role.ADMIN
    organization_id = None
    region_id = None

    def __init__(self, label: str = "system:cli") -> None:
        self.pk: Any = None
        self.username = label

    @property
    def scope(self) -> Scope:
        return Scope(role=Role.ADMIN, org_id=None, region_prefix=None, is_admin=True)


class Notification(models.Model):
    """An in-app message (站内提醒) for one person, e.g. a verification falling due.  Read or not."""

    user = models.ForeignKey(User, verbose_name=_("接收人"), on_delete=models.CASCADE, related_name="notifications")
    title = models.CharField(_("标题"), max_length=200)
    body = models.TextField(_("内容"), blank=True)
    link = models.CharField(_("链接"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("时间"), auto_now_add=True)
    read_at = models.DateTimeField(_("已读时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("站内提醒")
        verbose_name_plural = _("站内提醒")
        ordering = ["-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_user_read_idx")]

    def __str__(self) -> str:
        return self.title
