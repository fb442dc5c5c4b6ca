"""Credit (计量信用) and "double random, one public" inspection plans (双随机、一公开)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from jiliang.engine.credit import DEFAULT_EVENTS


class CreditEventQuerySet(models.QuerySet["CreditEvent"]):
    def restrict(self, principal: Any, action: str = "view") -> CreditEventQuerySet:
        from jiliang.registry.policy import apply
        from jiliang.supervision.policy import credit_q

        return apply(self, credit_q, principal, action)


class CreditEvent(models.Model):
    """One event in a market entity's credit file: what happened, when, and where it came from."""

    entity = models.ForeignKey("registry.Organization", verbose_name=_("市场主体"), on_delete=models.PROTECT,
                               related_name="credit_events")
    kind = models.CharField(_("事件类型"), max_length=40, choices=[(k, k) for k in DEFAULT_EVENTS])
    occurred_on = models.DateField(_("发生日期"))
    source = models.CharField(_("来源"), max_length=100, help_text=_("如 alert:123、spot_check:45"))
    note = models.CharField(_("说明"), max_length=300, blank=True)
    recorded_at = models.DateTimeField(_("记录时间"), auto_now_add=True)

    objects = CreditEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("信用事件")
        verbose_name_plural = _("信用事件")
        ordering = ["-occurred_on", "-id"]
        constraints = [models.UniqueConstraint(fields=["entity", "kind", "source"], name="credit_event_once")]
        indexes = [models.Index(fields=["entity", "occurred_on"], name="credit_event_entity_idx")]

    def __str__(self) -> str:
        return f"{self.entity_id} {self.kind} {self.occurred_on}"


class CreditGradeQuerySet(models.QuerySet["CreditGrade"]):
    def restrict(self, principal: Any, action: str = "view") -> CreditGradeQuerySet:
        from jiliang.registry.policy import apply
        from jiliang.supervision.policy import credit_q

        return apply(self, credit_q, principal, action)


class CreditGrade(models.Model):
    """An entity's current score and grade A/B/C/D, with what it was computed from."""

    entity = models.OneToOneField("registry.Organization", verbose_name=_("市场主体"), on_delete=models.PROTECT,
                                  related_name="credit_grade")
    score = models.FloatField(_("信用分"))
    grade = models.CharField(_("信用等级"), max_length=1)
    events = models.PositiveIntegerField(_("事件数"))
    computed_at = models.DateTimeField(_("评定时间"))

    objects = CreditGradeQuerySet.as_manager()

    class Meta:
        verbose_name = _("信用等级")
        verbose_name_plural = _("信用等级")
        ordering = ["entity_id"]

    def __str__(self) -> str:
        return f"{self.entity_id} {self.grade} ({self.score:.1f})"


class PlanQuerySet(models.QuerySet["InspectionPlan"]):
    def restrict(self, principal: Any, action: str = "view") -> PlanQuerySet:
        from jiliang.registry.policy import apply
        from jiliang.supervision.policy import plan_q

        return apply(self, plan_q, principal, action)


class InspectionPlan(models.Model):
    """A random inspection plan: population, shares per grade, and the verifiable draw's lifecycle
    draft → committed (frame frozen, commitment published) → drawn (beacon fixed, targets known) →
    published (secret, frame and targets public)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("草稿")
        COMMITTED = "committed", _("已承诺")
        DRAWN = "drawn", _("已抽取")
        PUBLISHED = "published", _("已公开")

    name = models.CharField(_("计划名称"), max_length=200)
    region = models.ForeignKey("registry.Region", verbose_name=_("区域"), on_delete=models.PROTECT, related_name="+")
    period_start = models.DateField(_("开始日期"))
    period_end = models.DateField(_("结束日期"))
    instrument_types = models.JSONField(_("器具类型"), default=list)
    shares = models.JSONField(_("各等级抽取比例"))
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    frame = models.JSONField(_("抽样框"), default=list)
    frame_hash = models.CharField(_("抽样框摘要"), max_length=64, blank=True)
    seed_commitment = models.CharField(_("种子承诺"), max_length=64, blank=True)
    commitment_digest = models.CharField(_("承诺摘要"), max_length=64, blank=True)
    secret_hex = models.CharField(max_length=64, blank=True)  # private until publication
    beacon = models.CharField(_("信标值"), max_length=200, blank=True)
    seed_hex = models.CharField(_("种子"), max_length=64, blank=True)
    selected = models.JSONField(_("抽中对象"), default=list)
    created_by = models.CharField(_("创建人"), max_length=150)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    committed_at = models.DateTimeField(_("承诺时间"), null=True, blank=True)
    drawn_at = models.DateTimeField(_("抽取时间"), null=True, blank=True)
    published_at = models.DateTimeField(_("公开时间"), null=True, blank=True)

    objects = PlanQuerySet.as_manager()

    class Meta:
        verbose_name = _("抽查计划")
        verbose_name_plural = _("抽查计划")
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(period_end__gte=models.F("period_start")),
                                              name="plan_period_order")]

    def __str__(self) -> str:
        return self.name
