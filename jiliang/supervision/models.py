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
    config_version = models.PositiveIntegerField(_("配置版本"), default=0,
                                                 help_text=_("评定所用信用评价配置的版本（0 为内置默认值）"))

    objects = CreditGradeQuerySet.as_manager()

    class Meta:
        verbose_name = _("信用等级")
        verbose_name_plural = _("信用等级")
        ordering = ["entity_id"]

    def __str__(self) -> str:
        return f"{self.entity_id} {self.grade} ({self.score:.1f})"


class CreditConfigQuerySet(models.QuerySet["CreditConfigVersion"]):
    def restrict(self, principal: Any, action: str = "view") -> CreditConfigQuerySet:
        from jiliang.registry.policy import apply
        from jiliang.supervision.policy import credit_config_q

        return apply(self, credit_config_q, principal, action)


class CreditConfigVersion(models.Model):
    """One version of the credit configuration (信用评价配置): weights and half-lives per event kind, base
    score, clamp bounds, grade thresholds and draw shares per grade.  Append-only: the current configuration
    is the highest version, earlier rows are its history; version 0 (no row) means the built-in defaults of
    :mod:`jiliang.engine.credit`."""

    version = models.PositiveIntegerField(_("版本"), unique=True)
    config = models.JSONField(_("配置"))
    note = models.CharField(_("修改说明"), max_length=300, blank=True)
    created_by = models.CharField(_("修改人"), max_length=150)
    created_at = models.DateTimeField(_("修改时间"), auto_now_add=True)

    objects = CreditConfigQuerySet.as_manager()

    class Meta:
        verbose_name = _("信用评价配置")
        verbose_name_plural = _("信用评价配置")
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"credit config v{self.version}"


class CreditRegradeRun(models.Model):
    """One regrade (信用评定) with its inputs: the as-of date, the configuration version and values, how many
    events up to which id, and what came out (entities, changed grades, count per grade)."""

    as_of = models.DateField(_("评定基准日"))
    config_version = models.PositiveIntegerField(_("配置版本"))
    config = models.JSONField(_("配置"))
    events = models.PositiveBigIntegerField(_("事件数"))
    last_event_id = models.PositiveBigIntegerField(_("最大事件编号"), default=0)
    entities = models.PositiveIntegerField(_("主体数"))
    created = models.PositiveIntegerField(_("新评定数"))
    changed = models.PositiveIntegerField(_("等级变化数"))
    by_grade = models.JSONField(_("各等级数量"), default=dict)
    started_at = models.DateTimeField(_("开始时间"))
    finished_at = models.DateTimeField(_("结束时间"))
    actor = models.CharField(_("执行人"), max_length=150)

    class Meta:
        verbose_name = _("信用评定记录")
        verbose_name_plural = _("信用评定记录")
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"regrade {self.as_of} v{self.config_version}"


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
    # The inspectors' draw (jiliang-pairing-v1): inputs and outcome, public with the bundle (opaque ids only).
    pairing = models.JSONField(_("执法人员匹配"), default=dict, blank=True)
    results_published_at = models.DateTimeField(_("结果公开时间"), null=True, blank=True)

    objects = PlanQuerySet.as_manager()

    class Meta:
        verbose_name = _("抽查计划")
        verbose_name_plural = _("抽查计划")
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(period_end__gte=models.F("period_start")),
                                              name="plan_period_order")]

    def __str__(self) -> str:
        return self.name


# ------------------------------------------------------------------------------------------ inspections


def _restrict(qs: Any, rule_name: str, principal: Any, action: str) -> Any:
    """Row-level scope through the central ``apply`` (rules in :mod:`jiliang.supervision.policy`; the
    inspection rules need the person's own id, so they are bound to it here)."""
    from jiliang.registry.policy import apply
    from jiliang.supervision import policy

    return apply(qs, policy.bound(rule_name, principal), principal, action)


class ConflictQuerySet(models.QuerySet["ConflictDeclaration"]):
    def restrict(self, principal: Any, action: str = "view") -> ConflictQuerySet:
        return _restrict(self, "conflict_q", principal, action)  # type: ignore[no-any-return]


class ConflictDeclaration(models.Model):
    """A declared conflict of interest (利益冲突声明): the inspector is never drawn for this organisation."""

    inspector = models.ForeignKey("accounts.User", verbose_name=_("执法人员"), on_delete=models.PROTECT,
                                  related_name="conflicts")
    organization = models.ForeignKey("registry.Organization", verbose_name=_("单位"), on_delete=models.PROTECT,
                                     related_name="+")
    reason = models.CharField(_("回避事由"), max_length=300)
    declared_at = models.DateTimeField(_("声明时间"), auto_now_add=True)
    declared_by = models.CharField(_("声明人"), max_length=150)

    objects = ConflictQuerySet.as_manager()

    class Meta:
        verbose_name = _("利益冲突声明")
        verbose_name_plural = _("利益冲突声明")
        ordering = ["-declared_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["inspector", "organization"], name="conflict_once")]

    def __str__(self) -> str:
        return f"{self.inspector_id} ↔ {self.organization_id}"


class TaskQuerySet(models.QuerySet["InspectionTask"]):
    def restrict(self, principal: Any, action: str = "view") -> TaskQuerySet:
        return _restrict(self, "task_q", principal, action)  # type: ignore[no-any-return]


class InspectionTask(models.Model):
    """An inspection task (检查任务): one drawn entity of a plan, or the owner of a confirmed alert's instrument
    (预警核查, no plan), and the two inspectors drawn for it (jiliang-pairing-v1); assigned → in_progress
    (first finding) → completed.  A task without two eligible inspectors is created unassigned with the
    reason."""

    class Status(models.TextChoices):
        UNASSIGNED = "unassigned", _("未分派")
        ASSIGNED = "assigned", _("已分派")
        IN_PROGRESS = "in_progress", _("检查中")
        COMPLETED = "completed", _("已完成")

    class Conclusion(models.TextChoices):
        PENDING = "", _("未出结论")
        CONFORMING = "conforming", _("未发现问题")
        NONCONFORMING = "nonconforming", _("发现问题")

    plan = models.ForeignKey(InspectionPlan, verbose_name=_("抽查计划"), on_delete=models.PROTECT,
                             related_name="tasks", null=True, blank=True)
    # An ad-hoc task opened on a confirmed alert (预警核查) has no plan: it is not part of a random draw.
    alert = models.OneToOneField("monitoring.Alert", verbose_name=_("来源预警"), on_delete=models.PROTECT,
                                 related_name="inspection_task", null=True, blank=True)
    entity = models.ForeignKey("registry.Organization", verbose_name=_("检查对象"), on_delete=models.PROTECT,
                               related_name="inspection_tasks")
    inspector_1 = models.ForeignKey("accounts.User", verbose_name=_("执法人员甲"), null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    inspector_2 = models.ForeignKey("accounts.User", verbose_name=_("执法人员乙"), null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    status = models.CharField(_("状态"), max_length=12, choices=Status.choices, default=Status.ASSIGNED)
    unassigned_reason = models.CharField(_("未分派原因"), max_length=40, blank=True)
    conclusion = models.CharField(_("检查结论"), max_length=14, choices=Conclusion.choices, blank=True, default="")
    summary = models.CharField(_("检查小结"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("创建时间"), auto_now_add=True)
    started_at = models.DateTimeField(_("开始时间"), null=True, blank=True)
    completed_at = models.DateTimeField(_("完成时间"), null=True, blank=True)
    # An alert task's inspectors draw (jiliang-pairing-v1 seeded from the alert id, docs/draw.md §7).
    pairing = models.JSONField(_("执法人员匹配"), default=dict, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("检查任务")
        verbose_name_plural = _("检查任务")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "entity"], name="task_once_per_plan"),
            models.CheckConstraint(condition=~models.Q(inspector_1=models.F("inspector_2")),
                                   name="task_two_different_inspectors"),
            models.CheckConstraint(condition=models.Q(plan__isnull=False) | models.Q(alert__isnull=False),
                                   name="task_from_plan_or_alert"),
        ]
        indexes = [models.Index(fields=["entity", "created_at"], name="task_entity_idx")]

    def __str__(self) -> str:
        return f"{self.plan_id}/{self.entity_id}" if self.plan_id else f"alert:{self.alert_id}/{self.entity_id}"

    @property
    def inspector_ids(self) -> set[int]:
        return {i for i in (self.inspector_1_id, self.inspector_2_id) if i is not None}


class FindingQuerySet(models.QuerySet["Finding"]):
    def restrict(self, principal: Any, action: str = "view") -> FindingQuerySet:
        return _restrict(self, "finding_q", principal, action)  # type: ignore[no-any-return]


class Finding(models.Model):
    """What the inspectors found at one instrument (现场检查记录): present, seal, software checksum shown
    against the filed one, and the spot-check verification (抽查检定) judged by the MPE engine."""

    task = models.ForeignKey(InspectionTask, verbose_name=_("检查任务"), on_delete=models.PROTECT,
                             related_name="findings")
    instrument = models.ForeignKey("registry.Instrument", verbose_name=_("计量器具"), on_delete=models.PROTECT,
                                   db_constraint=False, related_name="+")
    present = models.BooleanField(_("器具在场"))
    seal_intact = models.BooleanField(_("封印完好"), null=True, blank=True)
    sw_hash_shown = models.CharField(_("显示的软件校验和"), max_length=128, blank=True)
    sw_hash_filed = models.CharField(_("备案的软件校验和"), max_length=128, blank=True)
    sw_match = models.BooleanField(_("软件校验和一致"), null=True, blank=True)
    verification = models.ForeignKey("verification.Verification", verbose_name=_("抽查检定记录"), null=True,
                                     blank=True, on_delete=models.PROTECT, related_name="+")
    conforming = models.BooleanField(_("合格"))
    problems = models.JSONField(_("问题"), default=list, blank=True)
    note = models.CharField(_("备注"), max_length=500, blank=True)
    recorded_by = models.CharField(_("记录人"), max_length=150)
    recorded_at = models.DateTimeField(_("记录时间"), auto_now_add=True)

    objects = FindingQuerySet.as_manager()

    class Meta:
        verbose_name = _("检查记录")
        verbose_name_plural = _("检查记录")
        ordering = ["task_id", "id"]
        constraints = [models.UniqueConstraint(fields=["task", "instrument"], name="finding_once_per_instrument")]

    def __str__(self) -> str:
        return f"{self.task_id}/{self.instrument_id}"


class CaseQuerySet(models.QuerySet["Case"]):
    def restrict(self, principal: Any, action: str = "view") -> CaseQuerySet:
        return _restrict(self, "case_q", principal, action)  # type: ignore[no-any-return]


class Case(models.Model):
    """A case (案件) opened by a failing finding: legal basis (法律依据), the order to correct (责令改正) with a
    rectification deadline, and its follow-up.  open → rectification_due (deadline near) → rectified
    (reported by the entity) / escalated (deadline passed) → closed (rectification confirmed)."""

    class Status(models.TextChoices):
        OPEN = "open", _("已立案")
        RECTIFICATION_DUE = "rectification_due", _("整改即将到期")
        RECTIFIED = "rectified", _("已报整改")
        ESCALATED = "escalated", _("逾期未整改")
        CLOSED = "closed", _("已结案")

    task = models.ForeignKey(InspectionTask, verbose_name=_("检查任务"), on_delete=models.PROTECT,
                             related_name="cases")
    finding = models.OneToOneField(Finding, verbose_name=_("检查记录"), on_delete=models.PROTECT,
                                   related_name="case")
    entity = models.ForeignKey("registry.Organization", verbose_name=_("当事人"), on_delete=models.PROTECT,
                               related_name="metrology_cases")
    violations = models.JSONField(_("违法事实"), default=list)
    legal_basis = models.TextField(_("法律依据"))
    order = models.TextField(_("责令改正"))
    deadline = models.DateField(_("整改期限"))
    status = models.CharField(_("状态"), max_length=20, choices=Status.choices, default=Status.OPEN)
    rectification_note = models.CharField(_("整改情况"), max_length=500, blank=True)
    rectified_on = models.DateField(_("整改完成日期"), null=True, blank=True)
    opened_at = models.DateTimeField(_("立案时间"), auto_now_add=True)
    escalated_at = models.DateTimeField(_("移交时间"), null=True, blank=True)
    closed_at = models.DateTimeField(_("结案时间"), null=True, blank=True)

    objects = CaseQuerySet.as_manager()

    class Meta:
        verbose_name = _("案件")
        verbose_name_plural = _("案件")
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["status", "deadline"], name="case_status_deadline_idx")]

    def __str__(self) -> str:
        return f"case {self.pk} ({self.entity_id})"
