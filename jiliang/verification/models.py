"""Verification records (检定记录): first, periodic, after-repair, spot-check and factory verification."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from jiliang.registry import policy as registry_policy
from jiliang.verification import policy


class VerificationKind(models.TextChoices):
    FIRST = "first", _("首次检定")
    PERIODIC = "periodic", _("后续检定（周期）")
    AFTER_REPAIR = "after_repair", _("修理后检定")
    SPOT_CHECK = "spot_check", _("抽查检定")
    FACTORY = "factory", _("出厂检定（二检合一）")


class Stage(models.TextChoices):
    INITIAL = "initial", _("首次/后续检定限值")
    IN_SERVICE = "in_service", _("使用中检查限值")


class VerificationQuerySet(models.QuerySet["Verification"]):
    def restrict(self, principal: Any, action: str = "view") -> VerificationQuerySet:
        return registry_policy.apply(self, policy.verification_q, principal, action)


class Verification(models.Model):
    """One verification of one instrument with its test points judged by the MPE engine.

    ``conforming`` and ``results`` come from :mod:`jiliang.engine.rules`; ``valid_until`` from
    :mod:`jiliang.engine.validity` (empty when the instrument failed: a result notice has no validity).
    """

    instrument = models.ForeignKey("registry.Instrument", verbose_name=_("计量器具"), on_delete=models.PROTECT,
                                   related_name="verifications")
    kind = models.CharField(_("检定类别"), max_length=15, choices=VerificationKind.choices)
    stage = models.CharField(_("判定限值"), max_length=12, choices=Stage.choices, default=Stage.INITIAL)
    date = models.DateField(_("检定日期"))
    institution = models.ForeignKey("registry.Organization", verbose_name=_("检定单位"), on_delete=models.PROTECT,
                                    related_name="verifications_performed")
    verifier = models.CharField(_("检定员"), max_length=50, blank=True)
    certificate_no = models.CharField(_("证书编号"), max_length=64, blank=True)
    points = models.JSONField(_("检定点"))
    results = models.JSONField(_("判定结果"))
    conforming = models.BooleanField(_("检定结论合格"))
    valid_until = models.DateField(_("有效期至"), null=True, blank=True)
    created_at = models.DateTimeField(_("录入时间"), auto_now_add=True)

    objects = VerificationQuerySet.as_manager()

    class Meta:
        verbose_name = _("检定记录")
        verbose_name_plural = _("检定记录")
        ordering = ["-date", "-id"]
        indexes = [models.Index(fields=["instrument", "-date"], name="verif_instrument_date_idx"),
                   models.Index(fields=["institution", "-date"], name="verif_institution_date_idx")]
        constraints = [
            models.UniqueConstraint(fields=["institution", "certificate_no"], condition=~models.Q(certificate_no=""),
                                    name="verif_certificate_no_unique"),
            models.CheckConstraint(condition=models.Q(conforming=True) | models.Q(valid_until__isnull=True),
                                   name="verif_failed_has_no_validity"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.date} {'合格' if self.conforming else '不合格'}"
