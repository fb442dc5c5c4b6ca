"""Telemetry (在线监测数据) as typed tables, one per record kind of SPEC 3.2, plus the quarantine.

Rows are the records as received (every field of the contract is a column; OCMF strings verbatim), so
they serve as evidence in a case.  Devices are referenced by the instrument's primary key without a
database-level constraint: ingestion has already checked each device against the registry, and a
foreign-key check per row would halve the load rate.  Times are stored in UTC.
"""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.utils.translation import gettext_lazy as _


def _device() -> models.ForeignKey:  # type: ignore[type-arg]
    """No single-column index: every telemetry table's unique key starts with the device, so that index
    serves the look-ups by device, and one index less per stored row speeds up ingestion (ADR 0010)."""
    return models.ForeignKey("registry.Instrument", verbose_name=_("器具"), on_delete=models.DO_NOTHING,
                             db_constraint=False, db_index=False, related_name="+")


def _place() -> models.ForeignKey:  # type: ignore[type-arg]
    return models.ForeignKey("registry.Place", verbose_name=_("场所"), on_delete=models.DO_NOTHING,
                             db_constraint=False, related_name="+")


class _Segmented(models.Model):
    """A high-volume kind whose rows the detectors read from column segments (ADR 0012): a row saved one at a
    time through the ORM (rather than by ingest) gets a one-row segment too, or it would go unseen."""

    SEGMENT_KIND = ""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        adding = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if adding:
                from jiliang.monitoring.ingest import segment_saved_row

                segment_saved_row(self.SEGMENT_KIND, self)


class ScaleTxn(_Segmented):
    """A price-computing scale's transaction (计价秤交易): net weight, unit price and amount."""

    id = models.BigAutoField(primary_key=True)
    device = _device()
    ts = models.DateTimeField(_("时间"))
    seq = models.BigIntegerField(_("序号"))
    net_g = models.IntegerField(_("净重（克）"))
    tare_g = models.IntegerField(_("皮重（克）"))
    unit_price_fen_per_kg = models.IntegerField(_("单价（分/千克）"))
    amount_fen = models.BigIntegerField(_("金额（分）"))

    class Meta:
        verbose_name = _("计价秤交易")
        verbose_name_plural = _("计价秤交易")
        constraints = [models.UniqueConstraint(fields=["device", "seq"], name="scaletxn_device_seq")]

    def __str__(self) -> str:
        return f"{self.device_id}#{self.seq}"

    SEGMENT_KIND = "scale.txn"


class ScaleEvent(models.Model):
    """A scale's event (开机、置零、校准、参数修改、封印打开、软件): the tamper evidence of C4."""

    class Event(models.TextChoices):
        POWER_ON = "power_on", _("开机")
        ZERO = "zero", _("置零")
        CALIBRATION = "calibration", _("校准")
        PARAM_CHANGE = "param_change", _("参数修改")
        SEAL_OPEN = "seal_open", _("封印打开")
        SOFTWARE = "software", _("软件")

    id = models.BigAutoField(primary_key=True)
    device = _device()
    ts = models.DateTimeField(_("时间"))
    seq = models.BigIntegerField(_("序号"))
    event = models.CharField(_("事件"), max_length=16, choices=Event.choices)
    sw_id = models.CharField(_("软件标识"), max_length=64, blank=True)
    sw_hash = models.CharField(_("软件校验和"), max_length=128, blank=True)

    class Meta:
        verbose_name = _("计价秤事件")
        verbose_name_plural = _("计价秤事件")
        constraints = [models.UniqueConstraint(fields=["device", "seq"], name="scaleevent_device_seq")]

    def __str__(self) -> str:
        return f"{self.device_id}#{self.seq} {self.event}"


class ScaleRecheck(models.Model):
    """A re-weigh at the market's fair scale (公平秤复秤): what the stall's scale claimed, what was found."""

    id = models.BigAutoField(primary_key=True)
    place = _place()
    device = _device()
    ts = models.DateTimeField(_("时间"))
    claimed_g = models.IntegerField(_("标称重量（克）"))
    actual_g = models.IntegerField(_("复秤重量（克）"))

    class Meta:
        verbose_name = _("公平秤复秤")
        verbose_name_plural = _("公平秤复秤")
        constraints = [models.UniqueConstraint(fields=["device", "ts", "place"], name="recheck_device_ts")]

    def __str__(self) -> str:
        return f"{self.device_id} {self.ts:%Y-%m-%d %H:%M}"


class ChargerSession(models.Model):
    """An EV charging session (充电记录) with the charger's meter readings and the vehicle side's energy."""

    id = models.BigAutoField(primary_key=True)
    device = _device()
    seq = models.BigIntegerField(_("序号"))
    session_id = models.CharField(_("会话编号"), max_length=64)
    start_ts = models.DateTimeField(_("开始时间"))
    end_ts = models.DateTimeField(_("结束时间"))
    meter_start_wh = models.BigIntegerField(_("起始读数（Wh）"))
    meter_end_wh = models.BigIntegerField(_("结束读数（Wh）"))
    energy_wh = models.BigIntegerField(_("电量（Wh）"))
    vehicle = models.CharField(_("车辆（化名）"), max_length=64)
    bms_energy_wh = models.BigIntegerField(_("车端电量（Wh）"), null=True, blank=True)
    amount_fen = models.BigIntegerField(_("金额（分）"), null=True, blank=True)
    ocmf = models.TextField(_("OCMF 签名数据"), blank=True)

    class Meta:
        verbose_name = _("充电记录")
        verbose_name_plural = _("充电记录")
        constraints = [models.UniqueConstraint(fields=["device", "seq"], name="charger_device_seq")]
        indexes = [models.Index(fields=["vehicle"], name="charger_vehicle")]

    def __str__(self) -> str:
        return f"{self.device_id}#{self.seq}"


class DispenserSale(models.Model):
    """A fuel sale at one nozzle (加油记录) with the nozzle's totalizer."""

    id = models.BigAutoField(primary_key=True)
    device = _device()
    ts = models.DateTimeField(_("时间"))
    seq = models.BigIntegerField(_("序号"))
    volume_ml = models.BigIntegerField(_("体积（毫升）"))
    amount_fen = models.BigIntegerField(_("金额（分）"))
    totalizer_ml = models.BigIntegerField(_("累计（毫升）"))

    class Meta:
        verbose_name = _("加油记录")
        verbose_name_plural = _("加油记录")
        constraints = [models.UniqueConstraint(fields=["device", "seq"], name="dispenser_device_seq")]

    def __str__(self) -> str:
        return f"{self.device_id}#{self.seq}"


class TankReading(models.Model):
    """A tank gauge reading (液位仪读数) at a fuel station."""

    id = models.BigAutoField(primary_key=True)
    place = _place()
    tank = models.CharField(_("油罐"), max_length=32)
    ts = models.DateTimeField(_("时间"))
    volume_ml = models.BigIntegerField(_("体积（毫升）"))
    temp_c = models.FloatField(_("温度（℃）"))

    class Meta:
        verbose_name = _("液位仪读数")
        verbose_name_plural = _("液位仪读数")
        constraints = [models.UniqueConstraint(fields=["place", "tank", "ts"], name="tankreading_place_tank_ts")]

    def __str__(self) -> str:
        return f"{self.place_id}/{self.tank} {self.ts:%Y-%m-%d %H:%M}"


class TankDelivery(models.Model):
    """A fuel delivery into a tank (卸油)."""

    id = models.BigAutoField(primary_key=True)
    place = _place()
    tank = models.CharField(_("油罐"), max_length=32)
    ts = models.DateTimeField(_("时间"))
    volume_ml = models.BigIntegerField(_("体积（毫升）"))

    class Meta:
        verbose_name = _("卸油记录")
        verbose_name_plural = _("卸油记录")
        constraints = [models.UniqueConstraint(fields=["place", "tank", "ts"], name="tankdelivery_place_tank_ts")]

    def __str__(self) -> str:
        return f"{self.place_id}/{self.tank} {self.ts:%Y-%m-%d %H:%M}"


class MeterReading(_Segmented):
    """A household meter's register reading (抄表), in thousandths of the meter's unit (L or Wh)."""

    id = models.BigAutoField(primary_key=True)
    device = _device()
    ts = models.DateTimeField(_("时间"))
    seq = models.BigIntegerField(_("序号"))
    register_milli = models.BigIntegerField(_("读数（千分之一单位）"))
    flags = models.SmallIntegerField(_("标志"), default=0, help_text=_("1=reverse 2=tamper 4=low_battery"))

    class Meta:
        verbose_name = _("抄表记录")
        verbose_name_plural = _("抄表记录")
        constraints = [models.UniqueConstraint(fields=["device", "seq"], name="meter_device_seq")]

    def __str__(self) -> str:
        return f"{self.device_id}#{self.seq}"

    SEGMENT_KIND = "meter.reading"


class Quarantine(models.Model):
    """A rejected telemetry line, kept with its reason so nothing sent is silently lost (隔离区)."""

    id = models.BigAutoField(primary_key=True)
    received_at = models.DateTimeField(_("接收时间"), db_index=True)
    source = models.CharField(_("来源"), max_length=100)
    line_no = models.IntegerField(_("行号"))
    field = models.CharField(_("字段"), max_length=50, blank=True)
    reason = models.CharField(_("原因"), max_length=300)
    raw = models.TextField(_("原始内容"))

    class Meta:
        verbose_name = _("隔离记录")
        verbose_name_plural = _("隔离记录")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.source}:{self.line_no} {self.reason}"


class AlertQuerySet(models.QuerySet["Alert"]):
    def restrict(self, principal: object, action: str = "view") -> AlertQuerySet:
        from jiliang.monitoring.policy import alert_q
        from jiliang.registry.policy import apply

        return apply(self, alert_q, principal, action)


class Alert(models.Model):
    """A detector's alert about one instrument (预警), with evidence and a lifecycle:
    new → triaged → confirmed / dismissed (with a reason).  One open alert per device and detector:
    repeated evidence updates it."""

    class Status(models.TextChoices):
        NEW = "new", _("新预警")
        TRIAGED = "triaged", _("已分派")
        CONFIRMED = "confirmed", _("已确认")
        DISMISSED = "dismissed", _("已排除")

    class Severity(models.TextChoices):
        INFO = "info", _("提示")
        WARNING = "warning", _("警告")
        CRITICAL = "critical", _("严重")

    OPEN = ("new", "triaged")

    id = models.BigAutoField(primary_key=True)
    detector = models.CharField(_("检测规则"), max_length=50)
    device = models.ForeignKey("registry.Instrument", verbose_name=_("器具"), on_delete=models.PROTECT,
                               related_name="alerts")
    owner = models.ForeignKey("registry.Organization", verbose_name=_("使用单位"), on_delete=models.PROTECT,
                              related_name="+")
    region = models.ForeignKey("registry.Region", verbose_name=_("所在区划"), on_delete=models.PROTECT,
                               related_name="+")
    severity = models.CharField(_("严重程度"), max_length=10, choices=Severity.choices)
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.NEW)
    opened_at = models.DateTimeField(_("发现时间"))
    updated_at = models.DateTimeField(_("更新时间"))
    occurrences = models.PositiveIntegerField(_("触发次数"), default=1)
    evidence = models.JSONField(_("证据"))
    decision_reason = models.TextField(_("处理说明"), blank=True)
    decided_by = models.CharField(_("处理人"), max_length=150, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        verbose_name = _("预警")
        verbose_name_plural = _("预警")
        ordering = ["-opened_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["device", "detector"],
                                               condition=models.Q(status__in=["new", "triaged"]),
                                               name="alert_one_open_per_device_detector")]
        indexes = [models.Index(fields=["region", "status"], name="alert_region_status")]

    def __str__(self) -> str:
        return f"{self.detector} {self.device_id} {self.status}"


class DetectorConfig(models.Model):
    """A detector's parameters as data (Sentry's workflow engine style), validated against its class."""

    key = models.CharField(_("检测规则"), max_length=50, unique=True)
    params = models.JSONField(_("参数"), default=dict, blank=True)
    enabled = models.BooleanField(_("启用"), default=True)

    class Meta:
        verbose_name = _("检测规则配置")
        verbose_name_plural = _("检测规则配置")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from jiliang.engine.detectors import REGISTRY, DetectorParamsError

        cls = REGISTRY.get(self.key)
        if cls is None:
            raise ValidationError({"key": f"unknown detector {self.key!r}"})
        try:
            cls(**(self.params or {}))
        except (DetectorParamsError, TypeError) as exc:
            raise ValidationError({"params": str(exc)}) from exc


class DetectorCursor(models.Model):
    """How far a detector has read its telemetry table, and its per-device state between runs."""

    key = models.CharField(max_length=50, unique=True)
    last_id = models.BigIntegerField(default=0)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("检测进度")
        verbose_name_plural = _("检测进度")

    def __str__(self) -> str:
        return f"{self.key}@{self.last_id}"


class TelemetrySegment(models.Model):
    """A stored batch of a high-volume kind's rows as NumPy columns (列式数据段, ADR 0012), written by ingest
    in the transaction that stores the rows; the detector runner reads these instead of the rows and deletes
    them once every enabled detector of the kind has read past them.  A derived copy, never evidence."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(_("记录类型"), max_length=32)
    first_id = models.BigIntegerField(_("起始记录号"))
    last_id = models.BigIntegerField(_("末尾记录号"))
    rows = models.IntegerField(_("记录数"))
    max_ts = models.DateTimeField(_("最晚时间"))
    data = models.BinaryField(_("数据"))

    class Meta:
        verbose_name = _("列式数据段")
        verbose_name_plural = _("列式数据段")
        indexes = [models.Index(fields=["kind", "last_id"], name="segment_kind_last")]

    def __str__(self) -> str:
        return f"{self.kind}({self.first_id}..{self.last_id})"


class SegmentMark(models.Model):
    """Per kind: every row with an id above ``covered_after`` has its segment (rows stored before segments
    existed, and rows whose segments were consumed or pruned, are at or below it).  No mark: no segments."""

    kind = models.CharField(_("记录类型"), max_length=32, unique=True)
    covered_after = models.BigIntegerField(_("覆盖起点"), default=0)

    class Meta:
        verbose_name = _("数据段覆盖起点")
        verbose_name_plural = _("数据段覆盖起点")

    def __str__(self) -> str:
        return f"{self.kind}>{self.covered_after}"
