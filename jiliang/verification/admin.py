from django.contrib import admin
from django.http import HttpRequest

from jiliang.verification.models import Verification


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin[Verification]):
    """Read-only: verifications are recorded through the services so they are judged and logged."""

    list_display = ("instrument", "kind", "date", "institution", "conforming", "valid_until")
    list_filter = ("kind", "conforming")
    raw_id_fields = ("instrument", "institution")

    def has_change_permission(self, request: HttpRequest, obj: Verification | None = None) -> bool:
        return False
