from django.db import models
from django.utils.translation import gettext_lazy as _


class OrgKind(models.TextChoices):
    MARKET_ENTITY = "market_entity", _("经营者")
    MARKET_OPERATOR = "market_operator", _("市场开办方")
    CHARGING_OPERATOR = "charging_operator", _("充电运营商")
    FUEL_RETAILER = "fuel_retailer", _("加油站经营者")
    UTILITY = "utility", _("供水/供气/供电企业")
    MANUFACTURER = "manufacturer", _("制造单位")
    VERIFICATION_INSTITUTE = "verification_institute", _("检定机构")
    REGULATOR = "regulator", _("监管部门")


class PlaceKind(models.TextChoices):
    MARKET = "market", _("农贸市场")
    CHARGING_STATION = "charging_station", _("充电站")
    FUEL_STATION = "fuel_station", _("加油站")
    RESIDENCE = "residence", _("居民住址")
    OTHER = "other", _("其他")


class RegionLevel(models.TextChoices):
    PROVINCE = "province", _("省")
    CITY = "city", _("市")
    DISTRICT = "district", _("区县")


class InstrumentStatus(models.TextChoices):
    IN_STOCK = "in_stock", _("库存")
    INSTALLED = "installed", _("已安装")
    IN_SERVICE = "in_service", _("在用")
    SUSPENDED = "suspended", _("停用")
    RETIRED = "retired", _("报废")


# Allowed lifecycle moves (in stock → installed → in service → suspended → retired; suspended may return).
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    InstrumentStatus.IN_STOCK: frozenset({InstrumentStatus.INSTALLED, InstrumentStatus.RETIRED}),
    InstrumentStatus.INSTALLED: frozenset({InstrumentStatus.IN_SERVICE, InstrumentStatus.SUSPENDED,
                                           InstrumentStatus.RETIRED}),
    InstrumentStatus.IN_SERVICE: frozenset({InstrumentStatus.SUSPENDED, InstrumentStatus.RETIRED}),
    InstrumentStatus.SUSPENDED: frozenset({InstrumentStatus.IN_SERVICE, InstrumentStatus.RETIRED}),
    InstrumentStatus.RETIRED: frozenset(),
}


class VerificationMode(models.TextChoices):
    PERIODIC = "periodic", _("周期检定")
    FIRST_ONLY_LIMITED_LIFE = "first_only_limited_life_rotate", _("只做首次强制检定，限期使用，到期轮换")
    FIRST_ONLY_SCRAP = "first_only_scrap_when_inaccurate", _("只做首次强制检定，失准报废")
