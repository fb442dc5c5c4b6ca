"""Factory verification replacing first verification (二检合一, SPEC C3): the manufacturer's special
authorization (专项计量授权), the per-unit factory verification data (出厂检定数据), per-batch statistics,
delivery lots and the utilities' acceptance and installation (验收登记、安装), pre-installation supervisory
sampling (安装前监督抽样) with the penalty ladder, and recalls (召回).

The unit table is this app's bulk table (a million rows per upload): its references carry no database
foreign-key constraints (ADR 0007) and its test points are one compact JSON text column (ADR 0009).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from jiliang.factory import policy
from jiliang.registry import policy as registry_policy


class AuthStatus(models.TextChoices):
    APPLIED = "applied", _("已申请")
    ASSESSING = "assessing", _("考核中")
    GRANTED = "granted", _("有效")
    REJECTED = "rejected", _("未通过")
    SUSPENDED = "suspended", _("已暂停")
    REVOKED = "revoked", _("已取消")


class PenaltyStage(models.TextChoices):
    CLEAR = "clear", _("无不合格")
    BATCH_RETURNED = "batch_returned", _("整批退回")
    RECTIFYING = "rectifying", _("限期整改（停止销售）")
    RECTIFIED = "rectified", _("整改合格")
    SUSPENDED = "suspended", _("停止试点并公示")
    REVOKED = "revoked", _("取消资质")


class AuthorizationQuerySet(models.QuerySet["Authorization"]):
    def restrict(self, principal: Any, action: str = "view") -> AuthorizationQuerySet:
        return registry_policy.apply(self, policy.authorization_q, principal, action)


class Authorization(models.Model):
    """A manufacturer's special metrological authorization for factory verification (“二检合一”专项计量授权).

    ``conditions`` maps each condition met (:data:`jiliang.engine.factory.CONDITIONS`) to its evidence;
    ``scope`` lists the instrument types and nominal sizes covered (``[{"instrument_type", "dn_min",
    "dn_max"}]``).  ``penalty_stage``/``failures`` are the penalty ladder; ``stopped_models`` the models
    whose sale is stopped during rectification.  Changed only by :mod:`jiliang.factory.services`.
    """

    manufacturer = models.ForeignKey("registry.Organization", verbose_name=_("生产企业"), on_delete=models.PROTECT,
                                     related_name="factory_authorizations")
    number = models.CharField(_("授权证书编号"), max_length=64, blank=True)
    status = models.CharField(_("状态"), max_length=12, choices=AuthStatus.choices, default=AuthStatus.APPLIED)
    conditions = models.JSONField(_("授权条件"), default=dict)
    registered_metrologists = models.PositiveSmallIntegerField(_("注册计量师人数"), default=0)
    scope = models.JSONField(_("授权范围"), default=list)
    applied_on = models.DateField(_("申请日期"))
    assessment_note = models.CharField(_("考核意见"), max_length=500, blank=True)
    valid_from = models.DateField(_("有效期起"), null=True, blank=True)
    valid_until = models.DateField(_("有效期至"), null=True, blank=True)
    renewal_requested = models.BooleanField(_("已申请延续"), default=False)
    published = models.BooleanField(_("处理结果已公示"), default=False)
    reason = models.CharField(_("暂停/取消原因"), max_length=500, blank=True)
    penalty_stage = models.CharField(_("惩戒阶段"), max_length=16, choices=PenaltyStage.choices,
                                     default=PenaltyStage.CLEAR)
    failures = models.PositiveSmallIntegerField(_("抽检不合格次数"), default=0)
    stopped_models = models.JSONField(_("停止销售的型号"), default=list)
    updated_at = models.DateTimeField(_("更新时间"), auto_now=True)

    objects = AuthorizationQuerySet.as_manager()

    class Meta:
        verbose_name = _("二检合一授权")
        verbose_name_plural = _("二检合一授权")
        ordering = ["-applied_on", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["number"], condition=~models.Q(number=""), name="factauth_number_unique"),
            models.CheckConstraint(condition=~models.Q(status="granted") | models.Q(valid_until__isnull=False),
                                   name="factauth_granted_has_validity"),
        ]
        indexes = [models.Index(fields=["manufacturer", "status"], name="factauth_maker_status_idx")]

    def __str__(self) -> str:
        return self.number or f"application {self.pk}"


class FactoryUpload(models.Model):
    """One upload of factory verification data (出厂检定数据上传): the receipt that is change-logged in
    place of a log row per unit; ``sha256`` is the digest of the accepted units' canonical rows."""

    manufacturer = models.ForeignKey("registry.Organization", verbose_name=_("生产企业"), on_delete=models.PROTECT,
                                     related_name="+")
    source = models.CharField(_("来源"), max_length=20)
    created = models.PositiveIntegerField(_("新增"), default=0)
    unchanged = models.PositiveIntegerField(_("重复（未改变）"), default=0)
    sha256 = models.CharField(_("摘要"), max_length=64)
    actor_label = models.CharField(_("上传人"), max_length=150)
    created_at = models.DateTimeField(_("上传时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("出厂检定数据上传")
        verbose_name_plural = _("出厂检定数据上传")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"upload {self.pk}: {self.created} units"


class UnitStatus(models.TextChoices):
    IN_STOCK = "in_stock", _("在库")
    DELIVERED = "delivered", _("已交付")
    RETURNED = "returned", _("整批退回")
    ACCEPTED = "accepted", _("已验收")
    INSTALLED = "installed", _("已安装")
    RECALLED = "recalled", _("召回中")
    REPLACED = "replaced", _("已更换")


class UnitQuerySet(models.QuerySet["FactoryUnit"]):
    def restrict(self, principal: Any, action: str = "view") -> UnitQuerySet:
        return registry_policy.apply(self, policy.unit_q, principal, action)


class FactoryUnit(models.Model):
    """One unit's factory verification (出厂检定), with the fields the Tai'an plan publishes (附件2: 名称、
    规格型号、出厂编号、准确度等级、制造单位、生产日期、检定日期、有效期、检定结论、检定机构).

    ``points`` is the test points as compact JSON text (``[{"point": "Q1", "error_pct": 1.2}, ...]``);
    ``conforming`` the rule engine's verdict.  Unique on manufacturer + serial: a re-upload of the same
    unit is recognised and not stored twice; different data for a stored unit is refused."""

    upload_id = models.BigIntegerField(_("上传批次"))
    manufacturer = models.ForeignKey("registry.Organization", verbose_name=_("制造单位"), on_delete=models.PROTECT,
                                     db_constraint=False, db_index=False, related_name="+")
    authorization = models.ForeignKey(Authorization, verbose_name=_("授权"), on_delete=models.PROTECT,
                                      db_constraint=False, db_index=False, related_name="+")
    model = models.ForeignKey("registry.InstrumentModel", verbose_name=_("型号"), on_delete=models.PROTECT,
                              db_constraint=False, db_index=False, related_name="+")
    instrument_type = models.CharField(_("器具类型"), max_length=30)
    name = models.CharField(_("计量器具名称"), max_length=50)
    size_dn = models.PositiveSmallIntegerField(_("规格（DN）"))
    serial = models.CharField(_("出厂编号"), max_length=64)
    accuracy_class = models.CharField(_("准确度等级"), max_length=10)
    batch = models.CharField(_("生产批次"), max_length=64)
    production_date = models.DateField(_("生产日期"))
    verification_date = models.DateField(_("检定日期"))
    valid_until = models.DateField(_("有效期至"), null=True, blank=True)
    conforming = models.BooleanField(_("检定结论合格"))
    institution = models.CharField(_("检定机构"), max_length=200)
    points = models.TextField(_("检定点"))
    status = models.CharField(_("状态"), max_length=10, choices=UnitStatus.choices, default=UnitStatus.IN_STOCK)
    lot = models.ForeignKey("DeliveryLot", verbose_name=_("交付批"), null=True, blank=True, on_delete=models.PROTECT,
                            db_constraint=False, db_index=False, related_name="units")
    utility = models.ForeignKey("registry.Organization", verbose_name=_("供水供气企业"), null=True, blank=True,
                                on_delete=models.PROTECT, db_constraint=False, db_index=False, related_name="+")
    instrument = models.ForeignKey("registry.Instrument", verbose_name=_("登记器具"), null=True, blank=True,
                                   on_delete=models.PROTECT, db_constraint=False, db_index=False, related_name="+")
    install_address = models.CharField(_("安装地址"), max_length=300, blank=True)
    install_date = models.DateField(_("安装日期"), null=True, blank=True)
    install_reading = models.FloatField(_("安装时读数"), null=True, blank=True)
    recall = models.ForeignKey("Recall", verbose_name=_("召回"), null=True, blank=True, on_delete=models.PROTECT,
                               db_constraint=False, db_index=False, related_name="recalled_units")
    replaced_by = models.ForeignKey("self", verbose_name=_("更换为"), null=True, blank=True, on_delete=models.PROTECT,
                                    db_constraint=False, db_index=False, related_name="+")

    objects = UnitQuerySet.as_manager()

    class Meta:
        verbose_name = _("出厂检定记录")
        verbose_name_plural = _("出厂检定记录")
        ordering = ["manufacturer_id", "serial"]
        constraints = [models.UniqueConstraint(fields=["manufacturer", "serial"], name="factunit_maker_serial")]
        indexes = [models.Index(fields=["manufacturer", "model", "batch"], name="factunit_batch_idx"),
                   # partial: an upload writes neither, so these cost nothing on the bulk path
                   models.Index(fields=["lot"], condition=models.Q(lot__isnull=False), name="factunit_lot_idx"),
                   models.Index(fields=["utility", "status"], condition=models.Q(utility__isnull=False),
                                name="factunit_utility_idx")]

    def __str__(self) -> str:
        return f"{self.serial}"


class StatQuerySet(models.QuerySet["BatchPointStat"]):
    def restrict(self, principal: Any, action: str = "view") -> StatQuerySet:
        return registry_policy.apply(self, policy.manufacturer_rows_q, principal, action)


class BatchPointStat(models.Model):
    """Moments of the indication errors of one batch at one test point (批次统计): count, mean, M2 and the
    MPE there, merged exactly on each upload, so statistics never rescan the unit table."""

    manufacturer = models.ForeignKey("registry.Organization", verbose_name=_("制造单位"), on_delete=models.PROTECT,
                                     related_name="+")
    model = models.ForeignKey("registry.InstrumentModel", verbose_name=_("型号"), on_delete=models.PROTECT,
                              related_name="+")
    batch = models.CharField(_("生产批次"), max_length=64)
    point = models.CharField(_("检定点"), max_length=30)
    n = models.PositiveIntegerField(_("数量"))
    mean = models.FloatField(_("平均误差"))
    m2 = models.FloatField(_("离差平方和"))
    mpe = models.FloatField(_("最大允许误差"))
    first_date = models.DateField(_("最早检定日期"))
    last_date = models.DateField(_("最晚检定日期"))

    objects = StatQuerySet.as_manager()

    class Meta:
        verbose_name = _("批次统计")
        verbose_name_plural = _("批次统计")
        ordering = ["manufacturer_id", "model_id", "first_date", "batch", "point"]
        constraints = [models.UniqueConstraint(fields=["manufacturer", "model", "batch", "point"],
                                               name="factstat_unique")]

    def __str__(self) -> str:
        return f"{self.batch} {self.point}"


class LotStatus(models.TextChoices):
    DELIVERED = "delivered", _("已交付")
    SAMPLING = "sampling", _("抽样检定中")
    PASSED = "passed", _("抽检合格")
    RETURNED = "returned", _("整批退回")
    ACCEPTED = "accepted", _("已验收")


class LotQuerySet(models.QuerySet["DeliveryLot"]):
    def restrict(self, principal: Any, action: str = "view") -> LotQuerySet:
        return registry_policy.apply(self, policy.unit_q, principal, action)


class DeliveryLot(models.Model):
    """A lot of verified units of one model delivered to a utility (交付批), sampled before installation."""

    manufacturer = models.ForeignKey("registry.Organization", verbose_name=_("制造单位"), on_delete=models.PROTECT,
                                     related_name="+")
    utility = models.ForeignKey("registry.Organization", verbose_name=_("供水供气企业"), on_delete=models.PROTECT,
                                related_name="+")
    model = models.ForeignKey("registry.InstrumentModel", verbose_name=_("型号"), on_delete=models.PROTECT,
                              related_name="+")
    lot_no = models.CharField(_("交付批号"), max_length=64)
    size = models.PositiveIntegerField(_("数量"))
    status = models.CharField(_("状态"), max_length=10, choices=LotStatus.choices, default=LotStatus.DELIVERED)
    delivered_on = models.DateField(_("交付日期"))
    rejection_reason = models.CharField(_("拒收原因"), max_length=300, blank=True)

    objects = LotQuerySet.as_manager()

    class Meta:
        verbose_name = _("交付批")
        verbose_name_plural = _("交付批")
        ordering = ["-delivered_on", "-id"]
        constraints = [models.UniqueConstraint(fields=["manufacturer", "lot_no"], name="factlot_unique")]

    def __str__(self) -> str:
        return self.lot_no


class SamplingQuerySet(models.QuerySet["Sampling"]):
    def restrict(self, principal: Any, action: str = "view") -> SamplingQuerySet:
        return registry_policy.apply(self, policy.manufacturer_rows_q, principal, action)


class Sampling(models.Model):
    """Pre-installation supervisory sampling of a lot (安装前监督抽样检定): the GB/T 2828.1 plan, the seed and
    the serials drawn (recorded, reproducible), the results, and the outcome."""

    class Outcome(models.TextChoices):
        OPEN = "open", _("待检定")
        PASSED = "passed", _("合格")
        FAILED = "failed", _("不合格（整批退回）")

    lot = models.ForeignKey(DeliveryLot, verbose_name=_("交付批"), on_delete=models.PROTECT, related_name="samplings")
    manufacturer = models.ForeignKey("registry.Organization", verbose_name=_("制造单位"), on_delete=models.PROTECT,
                                     related_name="+")
    aql = models.CharField(_("AQL"), max_length=8)
    level = models.CharField(_("检验水平"), max_length=4)
    n = models.PositiveIntegerField(_("样本量"))
    ac = models.PositiveIntegerField(_("接收数 Ac"))
    re = models.PositiveIntegerField(_("拒收数 Re"))
    seed = models.CharField(_("抽样种子"), max_length=64)
    selected = models.JSONField(_("抽中的出厂编号"), default=list)
    results = models.JSONField(_("检定结果"), default=dict)
    defectives = models.PositiveIntegerField(_("不合格数"), default=0)
    outcome = models.CharField(_("结论"), max_length=8, choices=Outcome.choices, default=Outcome.OPEN)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)

    objects = SamplingQuerySet.as_manager()

    class Meta:
        verbose_name = _("监督抽样")
        verbose_name_plural = _("监督抽样")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"sampling {self.pk} of {self.lot_id}"


class PenaltyStep(models.Model):
    """One step of the penalty ladder (惩戒记录), kept for the public list and the history."""

    authorization = models.ForeignKey(Authorization, verbose_name=_("授权"), on_delete=models.PROTECT,
                                      related_name="penalty_steps")
    event = models.CharField(_("事件"), max_length=24)
    from_stage = models.CharField(_("原阶段"), max_length=16, choices=PenaltyStage.choices)
    to_stage = models.CharField(_("新阶段"), max_length=16, choices=PenaltyStage.choices)
    failures = models.PositiveSmallIntegerField(_("不合格次数"))
    actions = models.JSONField(_("处理措施"), default=list)
    sampling = models.ForeignKey(Sampling, verbose_name=_("抽样"), null=True, on_delete=models.PROTECT,
                                 related_name="+")
    note = models.CharField(_("说明"), max_length=300, blank=True)
    at = models.DateTimeField(_("时间"), auto_now_add=True)

    class Meta:
        verbose_name = _("惩戒记录")
        verbose_name_plural = _("惩戒记录")
        ordering = ["authorization_id", "id"]

    def __str__(self) -> str:
        return f"{self.event}: {self.from_stage} → {self.to_stage}"


class RecallQuerySet(models.QuerySet["Recall"]):
    def restrict(self, principal: Any, action: str = "view") -> RecallQuerySet:
        return registry_policy.apply(self, policy.manufacturer_rows_q, principal, action)


class Recall(models.Model):
    """A recall of the units of a batch with systematic error (系统性失准召回) and their replacement."""

    manufacturer = models.ForeignKey("registry.Organization", verbose_name=_("制造单位"), on_delete=models.PROTECT,
                                     related_name="+")
    model = models.ForeignKey("registry.InstrumentModel", verbose_name=_("型号"), on_delete=models.PROTECT,
                              related_name="+")
    batch = models.CharField(_("生产批次"), max_length=64)
    reason = models.CharField(_("原因"), max_length=300)
    units = models.PositiveIntegerField(_("召回数量"))
    replaced = models.PositiveIntegerField(_("已更换"), default=0)
    opened_on = models.DateField(_("召回日期"))

    objects = RecallQuerySet.as_manager()

    class Meta:
        verbose_name = _("召回")
        verbose_name_plural = _("召回")
        ordering = ["-opened_on", "-id"]
        constraints = [models.UniqueConstraint(fields=["manufacturer", "model", "batch"], name="factrecall_unique")]

    def __str__(self) -> str:
        return f"recall {self.batch}"
