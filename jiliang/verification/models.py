"""Verification records (检定记录): first, periodic, after-repair, spot-check and factory verification; and
their electronic certificates (电子证书) with the institutions' signing keys."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from jiliang.accounts.roles import Scope
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
    standards = models.CharField(_("使用的计量标准"), max_length=300, blank=True, db_default="",
                                 help_text=_("名称、测量范围、准确度等级及证书编号"))
    temperature_c = models.FloatField(_("环境温度（℃）"), null=True, blank=True)
    humidity_pct = models.FloatField(_("相对湿度（%）"), null=True, blank=True)
    # The engine's verdict is kept when an institution overrides the conclusion (with a logged reason).
    engine_conforming = models.BooleanField(_("引擎判定合格"), null=True, blank=True)
    override_reason = models.TextField(_("结论更正理由"), blank=True, db_default="")
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


# ---------------------------------------------------------------------------------------------- certificates

class KeyAlgorithm(models.TextChoices):
    SM2 = "sm2", _("SM2（SM3 杂凑）")
    ED25519 = "ed25519", _("Ed25519")


class KeyStatus(models.TextChoices):
    ACTIVE = "active", _("在用")
    RETIRED = "retired", _("已停用")


class InstitutionKeyQuerySet(models.QuerySet["InstitutionKey"]):
    def published(self) -> InstitutionKeyQuerySet:
        """Every key that ever signed: retired keys stay published so old certificates still verify."""
        return self.select_related("organization").order_by("organization_id", "-created_at", "-id")


class InstitutionKey(models.Model):
    """An institution's signing key pair (机构签名密钥).  The public half is published (kid, algorithm,
    hex); the private half lives encrypted in :class:`InstitutionKeySecret`, which is never change-logged.
    At most one key per institution is active; retired keys keep verifying what they signed."""

    organization = models.ForeignKey("registry.Organization", verbose_name=_("检定机构"), on_delete=models.PROTECT,
                                     related_name="signing_keys")
    kid = models.CharField(_("密钥标识"), max_length=16, unique=True)
    algorithm = models.CharField(_("签名算法"), max_length=10, choices=KeyAlgorithm.choices, default=KeyAlgorithm.SM2)
    public_key_hex = models.CharField(_("公钥（十六进制）"), max_length=130)
    status = models.CharField(_("状态"), max_length=10, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    retired_at = models.DateTimeField(_("停用时间"), null=True, blank=True)

    objects = InstitutionKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("机构签名密钥")
        verbose_name_plural = _("机构签名密钥")
        ordering = ["organization_id", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organization"], condition=models.Q(status="active"),
                                    name="instkey_one_active_per_org"),
            models.CheckConstraint(condition=models.Q(status="active", retired_at__isnull=True)
                                   | models.Q(status="retired", retired_at__isnull=False),
                                   name="instkey_retired_has_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.algorithm})"


class InstitutionKeySecret(models.Model):
    """The private half of an :class:`InstitutionKey`, sealed with AES-256-GCM under a key derived from
    the deployment's secret (:func:`jiliang.engine.signing.seal_private_key`).  A separate table so
    that it never enters the change log or an API response."""

    key = models.OneToOneField(InstitutionKey, verbose_name=_("密钥"), on_delete=models.CASCADE, primary_key=True,
                               related_name="secret")
    sealed_private_key = models.TextField(_("加密私钥"))

    class Meta:
        verbose_name = _("机构签名私钥")
        verbose_name_plural = _("机构签名私钥")
        ordering = ["key_id"]

    def __str__(self) -> str:
        return f"secret of {self.key_id}"


class CertificateSequence(models.Model):
    """The last certificate number used by an institution in a year (证书流水号); incremented with an
    atomic UPDATE inside the issuing transaction, so two issuers never get the same number."""

    institution = models.ForeignKey("registry.Organization", verbose_name=_("检定机构"), on_delete=models.CASCADE,
                                    related_name="+")
    year = models.PositiveSmallIntegerField(_("年度"))
    last = models.PositiveIntegerField(_("最后流水号"), default=0)

    class Meta:
        verbose_name = _("证书流水号")
        verbose_name_plural = _("证书流水号")
        ordering = ["institution_id", "year"]
        constraints = [models.UniqueConstraint(fields=["institution", "year"], name="certseq_institution_year")]

    def __str__(self) -> str:
        return f"{self.institution_id}/{self.year}: {self.last}"


class CertificateKind(models.TextChoices):
    CERTIFICATE = "certificate", _("检定证书")
    RESULT_NOTICE = "result_notice", _("检定结果通知书")


def _through(q: Q, prefix: str) -> Q:
    """Rewrite a filter on one model so that it applies through a relation (``prefix__field``)."""
    out = Q()
    out.connector, out.negated = q.connector, q.negated
    for child in q.children:
        if isinstance(child, Q):
            out.children.append(_through(child, prefix))
        else:
            lookup, value = child  # type: ignore[misc]  # a Q's leaf children are (lookup, value) pairs
            out.children.append((f"{prefix}__{lookup}", value))
    return out


def certificate_q(scope: Scope, action: str) -> Q | None:
    """A certificate is seen by whoever may see its verification (viewing only: certificates are written
    by :mod:`jiliang.verification.certificates`, which checks who may issue and revoke)."""
    if action != registry_policy.VIEW:
        return None
    q = policy.verification_q(scope, action)
    return None if q is None else _through(q, "verification")


class CertificateQuerySet(models.QuerySet["Certificate"]):
    def restrict(self, principal: Any, action: str = "view") -> CertificateQuerySet:
        """Whoever may see the verification may see its certificate."""
        return registry_policy.apply(self, certificate_q, principal, action)


class Certificate(models.Model):
    """An electronic verification certificate (检定证书, conforming) or result notice (检定结果通知书,
    non-conforming) for one verification, numbered per institution and year, signed by the institution.

    ``payload`` is the signed QR text (``JL1:…``, :mod:`jiliang.engine.signing`).  Revoking sets
    ``revoked_at`` and a reason; the row is never deleted.
    """

    verification = models.OneToOneField(Verification, verbose_name=_("检定记录"), on_delete=models.PROTECT,
                                        related_name="certificate")
    institution = models.ForeignKey("registry.Organization", verbose_name=_("发证机构"), on_delete=models.PROTECT,
                                    related_name="certificates_issued")
    number = models.CharField(_("证书编号"), max_length=64)
    year = models.PositiveSmallIntegerField(_("年度"))
    seq = models.PositiveIntegerField(_("流水号"))
    kind = models.CharField(_("证书类别"), max_length=15, choices=CertificateKind.choices)
    key = models.ForeignKey(InstitutionKey, verbose_name=_("签名密钥"), on_delete=models.PROTECT,
                            related_name="certificates")
    checker = models.CharField(_("核验员"), max_length=50, blank=True)
    approver = models.CharField(_("批准人"), max_length=50, blank=True)
    issued_at = models.DateTimeField(_("签发时间"))
    issued_by = models.CharField(_("签发人"), max_length=150)
    payload = models.TextField(_("二维码签名数据"))
    revoked_at = models.DateTimeField(_("撤销时间"), null=True, blank=True)
    revocation_reason = models.CharField(_("撤销原因"), max_length=300, blank=True)

    objects = CertificateQuerySet.as_manager()

    class Meta:
        verbose_name = _("检定证书")
        verbose_name_plural = _("检定证书")
        ordering = ["-issued_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "number"], name="cert_institution_number_unique"),
            models.UniqueConstraint(fields=["institution", "year", "seq"], name="cert_institution_year_seq_unique"),
            models.CheckConstraint(condition=models.Q(revoked_at__isnull=True) | ~models.Q(revocation_reason=""),
                                   name="cert_revocation_has_reason"),
        ]
        indexes = [models.Index(fields=["institution", "-issued_at"], name="cert_institution_issued_idx")]

    def __str__(self) -> str:
        return self.number

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class ReminderKind(models.TextChoices):
    DUE_SOON = "due_soon", _("即将到期")
    OVERDUE = "overdue", _("已超期")


class Reminder(models.Model):
    """A due-date reminder (到期提醒) sent for one instrument's validity: once per instrument, kind and
    validity date, so a daily job never repeats itself and a new verification starts afresh."""

    instrument = models.ForeignKey("registry.Instrument", verbose_name=_("计量器具"), on_delete=models.CASCADE,
                                   related_name="reminders", db_constraint=False)
    organization = models.ForeignKey("registry.Organization", verbose_name=_("使用单位"), on_delete=models.CASCADE,
                                     related_name="+")
    kind = models.CharField(_("类别"), max_length=10, choices=ReminderKind.choices)
    valid_until = models.DateField(_("有效期至"))
    sent_at = models.DateTimeField(_("发送时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("到期提醒")
        verbose_name_plural = _("到期提醒")
        constraints = [models.UniqueConstraint(fields=["instrument", "kind", "valid_until"],
                                               name="reminder_once_per_validity")]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.kind} {self.valid_until}"
