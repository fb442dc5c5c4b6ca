from django.contrib import admin
from django.http import HttpRequest

from jiliang.registry.models import Instrument, InstrumentModel, InstrumentType, Organization, Place, Region


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin[Region]):
    list_display = ("code", "name", "level", "parent")


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin[Organization]):
    list_display = ("uscc", "name", "region")
    search_fields = ("uscc", "name")


@admin.register(Place)
class PlaceAdmin(admin.ModelAdmin[Place]):
    list_display = ("key", "name", "kind", "region", "operator")
    search_fields = ("key", "name")
    raw_id_fields = ("operator",)


@admin.register(InstrumentType)
class InstrumentTypeAdmin(admin.ModelAdmin[InstrumentType]):
    list_display = ("key", "name_zh", "regulation", "verification_mode", "period_months", "service_life_years",
                    "confidence")


@admin.register(InstrumentModel)
class InstrumentModelAdmin(admin.ModelAdmin[InstrumentModel]):
    list_display = ("name", "maker", "instrument_type", "accuracy_class", "type_approval_no")
    raw_id_fields = ("maker",)


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin[Instrument]):
    """Read-mostly: changes to instruments go through the services so that they are change-logged."""

    list_display = ("device_id", "instrument_type", "owner", "region", "status")
    list_filter = ("instrument_type", "status")
    search_fields = ("device_id", "serial")
    raw_id_fields = ("owner", "maker", "model", "place")
    readonly_fields = ("qr_token",)

    def has_change_permission(self, request: HttpRequest, obj: Instrument | None = None) -> bool:
        return False
