"""Registry (登记备案) models: regions, organisations, places, the instrument catalogue, models, instruments.

Row-level permission lives in one place: each queryset's ``restrict(principal, action)`` (NetBox style),
built from :mod:`jiliang.registry.policy`.  Selectors always go through it.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from jiliang.core.models import TimeStampedModel
from jiliang.registry import policy
from jiliang.registry.choices import InstrumentStatus, OrgKind, PlaceKind, RegionLevel, VerificationMode

region_code_validator = RegexValidator(r"^\d{6}$", _("行政区划代码应为6位数字（GB/T 2260）"))


class Region(models.Model):
    """An administrative division (行政区划) keyed by its GB/T 2260 six-digit code."""

    code = models.CharField(_("行政区划代码"), max_length=6, primary_key=True, validators=[region_code_validator])
    name = models.CharField(_("名称"), max_length=50)
    name_en = models.CharField(_("英文名称"), max_length=50, blank=True)
    level = models.CharField(_("级别"), max_length=10, choices=RegionLevel.choices)
    parent = models.ForeignKey("self", verbose_name=_("上级区划"), null=True, blank=True, on_delete=models.PROTECT,
                               related_name="children")

    class Meta:
        verbose_name = _("行政区划")
        verbose_name_plural = _("行政区划")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name}（{self.code}）"


class OrganizationQuerySet(models.QuerySet["Organization"]):
    def restrict(self, principal: Any, action: str = "view") -> OrganizationQuerySet:
        return policy.apply(self, policy.organization_q, principal, action)


class Organization(TimeStampedModel):
    """A legal person or other organisation (市场主体), keyed by its Unified Social Credit Code."""

    uscc = models.CharField(_("统一社会信用代码"), max_length=18, unique=True)
    name = models.CharField(_("名称"), max_length=200)
    region = models.ForeignKey(Region, verbose_name=_("所在区划"), on_delete=models.PROTECT,
                               related_name="organizations")
    address = models.CharField(_("地址"), max_length=300, blank=True)
    contact_phone = models.CharField(_("联系电话"), max_length=40, blank=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        verbose_name = _("单位")
        verbose_name_plural = _("单位")
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["region"], name="org_region_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def kind_list(self) -> list[str]:
        cached = getattr(self, "_prefetched_objects_cache", {}).get("kinds")
        rows = cached if cached is not None else self.kinds.all()
        return sorted(k.kind for k in rows)

    def changelog_extra(self) -> dict[str, Any]:
        return {"kinds": self.kind_list} if self.pk else {}


class OrganizationKind(models.Model):
    """One kind an organisation has (an organisation may be, say, both a market operator and a utility)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="kinds")
    kind = models.CharField(_("类别"), max_length=30, choices=OrgKind.choices)

    class Meta:
        verbose_name = _("单位类别")
        verbose_name_plural = _("单位类别")
        ordering = ["organization_id", "kind"]
        constraints = [models.UniqueConstraint(fields=["organization", "kind"], name="org_kind_unique")]
        indexes = [models.Index(fields=["kind", "organization"], name="org_kind_idx")]

    def __str__(self) -> str:
        return f"{self.organization_id}:{self.kind}"


class PlaceQuerySet(models.QuerySet["Place"]):
    def restrict(self, principal: Any, action: str = "view") -> PlaceQuerySet:
        return policy.apply(self, policy.place_q, principal, action)


class Place(TimeStampedModel):
    """Where instruments are used: a farmers' market, a charging or fuel station, a residence."""

    key = models.CharField(_("场所编号"), max_length=64, unique=True)
    name = models.CharField(_("名称"), max_length=200)
    kind = models.CharField(_("类型"), max_length=20, choices=PlaceKind.choices)
    region = models.ForeignKey(Region, verbose_name=_("所在区划"), on_delete=models.PROTECT, related_name="places")
    address = models.CharField(_("地址"), max_length=300, blank=True)
    lat = models.FloatField(_("纬度"), null=True, blank=True)
    lon = models.FloatField(_("经度"), null=True, blank=True)
    operator = models.ForeignKey(Organization, verbose_name=_("经营/开办单位"), on_delete=models.PROTECT,
                                 related_name="operated_places")

    objects = PlaceQuerySet.as_manager()

    class Meta:
        verbose_name = _("场所")
        verbose_name_plural = _("场所")
        ordering = ["key"]
        indexes = [models.Index(fields=["region", "kind"], name="place_region_kind_idx"),
                   models.Index(fields=["operator"], name="place_operator_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(lat__isnull=True) | models.Q(lat__gte=-90, lat__lte=90),
                                   name="place_lat_range"),
            models.CheckConstraint(condition=models.Q(lon__isnull=True) | models.Q(lon__gte=-180, lon__lte=180),
                                   name="place_lon_range"),
        ]

    def __str__(self) -> str:
        return self.name


class InstrumentType(models.Model):
    """An entry of the mandatory-control catalogue (强制管理的计量器具目录) with its verification mode."""

    key = models.CharField(_("类型代码"), max_length=30, primary_key=True)
    name_zh = models.CharField(_("中文名称"), max_length=50)
    name_en = models.CharField(_("英文名称"), max_length=80)
    regulation = models.CharField(_("检定规程"), max_length=50)
    oiml = models.CharField(_("OIML 对应"), max_length=80, blank=True)
    accuracy_classes = models.JSONField(_("准确度等级"), default=list)
    params_schema = models.JSONField(_("参数说明"), default=dict)
    verification_mode = models.CharField(_("检定方式"), max_length=40, choices=VerificationMode.choices)
    period_months = models.PositiveSmallIntegerField(_("检定周期（月）"), null=True, blank=True)
    service_life_years = models.PositiveSmallIntegerField(_("使用年限（年）"), null=True, blank=True)
    note = models.TextField(_("说明"), blank=True)
    source = models.TextField(_("依据来源"))
    confidence = models.CharField(_("可信度"), max_length=10)

    class Meta:
        verbose_name = _("器具类型")
        verbose_name_plural = _("器具类型目录")
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(verification_mode="periodic") | models.Q(period_months__isnull=False),
                name="type_periodic_has_period",
            ),
        ]

    def __str__(self) -> str:
        return self.name_zh


class InstrumentModelQuerySet(models.QuerySet["InstrumentModel"]):
    def restrict(self, principal: Any, action: str = "view") -> InstrumentModelQuerySet:
        return policy.apply(self, policy.instrument_model_q, principal, action)


class InstrumentModel(TimeStampedModel):
    """A maker's model (型号) of one instrument type and accuracy class, with its type approval."""

    maker = models.ForeignKey(Organization, verbose_name=_("制造单位"), on_delete=models.PROTECT,
                              related_name="instrument_models")
    name = models.CharField(_("型号"), max_length=100)
    instrument_type = models.ForeignKey(InstrumentType, verbose_name=_("器具类型"), on_delete=models.PROTECT)
    accuracy_class = models.CharField(_("准确度等级"), max_length=10, blank=True)
    type_approval_no = models.CharField(_("型式批准证书号"), max_length=64, blank=True)
    params = models.JSONField(_("规格参数"), default=dict, blank=True)

    objects = InstrumentModelQuerySet.as_manager()

    class Meta:
        verbose_name = _("器具型号")
        verbose_name_plural = _("器具型号")
        ordering = ["maker_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["maker", "name", "instrument_type", "accuracy_class"],
                                    name="instrument_model_unique"),
        ]

    def __str__(self) -> str:
        cls = f" {self.accuracy_class}级" if self.accuracy_class else ""
        return f"{self.name}{cls}"


def new_qr_token() -> str:
    """An unguessable token for the public QR page (一器一码): 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def new_qr_tokens(count: int) -> list[str]:
    """``count`` tokens at once for bulk imports: 144 random bits each (18 bytes = 24 URL-safe characters,
    so one base64 pass over all the bytes splits exactly at token boundaries)."""
    text = base64.urlsafe_b64encode(secrets.token_bytes(18 * count)).decode()
    return [text[k: k + 24] for k in range(0, 24 * count, 24)]


class InstrumentQuerySet(models.QuerySet["Instrument"]):
    def restrict(self, principal: Any, action: str = "view") -> InstrumentQuerySet:
        return policy.apply(self, policy.instrument_q, principal, action)


class Instrument(TimeStampedModel):
    """One measuring instrument with a lifelong identity (一器一码).

    ``region`` is the district the instrument is used in (its place's, else its owner's); it is kept on the
    row so that region scope is one indexed prefix filter.
    """

    device_id = models.CharField(_("器具编号"), max_length=64)  # unique: see Meta.constraints
    serial = models.CharField(_("出厂编号"), max_length=64)
    # The instrument table is the registry's bulk table (100,000s of rows per import), so (ADR 0007):
    # - no database-level foreign-key constraints: every reference is validated against the registry
    #   before a row is written, PROTECT still guards deletions in Django, and no service deletes registry
    #   rows; the deferred constraint checks were the largest single cost of an import;
    # - single-column FK indexes are left out where a composite index below starts with the column, and
    #   for varchar keys, which on PostgreSQL also get a varchar_pattern_ops index.
    model = models.ForeignKey(InstrumentModel, verbose_name=_("型号"), on_delete=models.PROTECT,
                              db_constraint=False, related_name="instruments")
    instrument_type = models.ForeignKey(InstrumentType, verbose_name=_("器具类型"), on_delete=models.PROTECT,
                                        db_index=False, db_constraint=False)
    maker = models.ForeignKey(Organization, verbose_name=_("制造单位"), on_delete=models.PROTECT, db_index=False,
                              db_constraint=False, related_name="made_instruments")
    owner = models.ForeignKey(Organization, verbose_name=_("使用单位"), on_delete=models.PROTECT, db_index=False,
                              db_constraint=False, related_name="owned_instruments")
    place = models.ForeignKey(Place, verbose_name=_("使用场所"), null=True, blank=True, on_delete=models.PROTECT,
                              db_index=False, db_constraint=False, related_name="instruments")
    region = models.ForeignKey(Region, verbose_name=_("所在区划"), on_delete=models.PROTECT, db_index=False,
                               db_constraint=False, related_name="instruments")
    status = models.CharField(_("状态"), max_length=12, choices=InstrumentStatus.choices,
                              default=InstrumentStatus.IN_STOCK)
    accuracy_class = models.CharField(_("准确度等级"), max_length=10, blank=True)
    params = models.JSONField(_("规格参数"), default=dict, blank=True)
    install_date = models.DateField(_("安装日期"), null=True, blank=True)
    tank = models.CharField(_("油罐"), max_length=32, blank=True, help_text=_("加油枪所连接的油罐编号（场所内）"))
    sw_id = models.CharField(_("软件标识"), max_length=64, blank=True)
    sw_hash = models.CharField(_("软件校验和"), max_length=128, blank=True)
    public_key_hex = models.CharField(_("签名公钥"), max_length=400, blank=True)
    qr_token = models.CharField(_("二维码令牌"), max_length=32, default=new_qr_token, editable=False)
    # The latest verification, kept here by the verification services so due lists are one indexed query.
    last_verified_on = models.DateField(_("最近检定日期"), null=True, blank=True)
    last_verification_conforming = models.BooleanField(_("最近检定合格"), null=True, blank=True)
    valid_until = models.DateField(_("有效期至"), null=True, blank=True)

    objects = InstrumentQuerySet.as_manager()

    class Meta:
        verbose_name = _("计量器具")
        verbose_name_plural = _("计量器具")
        ordering = ["device_id"]
        constraints = [
            models.UniqueConstraint(fields=["maker", "serial"], name="instrument_maker_serial_unique"),
            # Constraints rather than unique=True: same uniqueness, without the LIKE (varchar_pattern_ops) index
            # nobody uses -- each index on this table costs bulk imports (bench/RESULTS.md).
            models.UniqueConstraint(fields=["device_id"], name="instrument_device_id_unique",
                                    violation_error_message=_("该器具编号已登记")),
            models.UniqueConstraint(fields=["qr_token"], name="instrument_qr_token_unique"),
        ]
        indexes = [
            models.Index(fields=["region", "instrument_type", "status"], name="instr_region_type_idx"),
            models.Index(fields=["owner"], name="instr_owner_idx"),
            models.Index(fields=["place"], name="instr_place_idx"),
            models.Index(fields=["valid_until", "region"], name="instr_valid_until_idx"),
        ]

    def __str__(self) -> str:
        return self.device_id
