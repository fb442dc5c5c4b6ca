from django.contrib import admin
from django.http import HttpRequest

from jiliang.verification.models import Certificate, InstitutionKey, Verification


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin[Verification]):
    """Read-only: verifications are recorded through the services so they are judged and logged."""

    list_display = ("instrument", "kind", "date", "institution", "conforming", "valid_until")
    list_filter = ("kind", "conforming")
    raw_id_fields = ("instrument", "institution")

    def has_change_permission(self, request: HttpRequest, obj: Verification | None = None) -> bool:
        return False


@admin.register(InstitutionKey)
class InstitutionKeyAdmin(admin.ModelAdmin[InstitutionKey]):
    """Published keys are read-only here: keys are created and retired by the certificate services."""

    list_display = ("organization", "kid", "algorithm", "status")
    raw_id_fields = ("organization",)

    def has_change_permission(self, request: HttpRequest, obj: InstitutionKey | None = None) -> bool:
        return False


@admin.register(Certificate)
class CertificateAdmin(admin.ModelAdmin[Certificate]):
    """Read-only: certificates are issued and revoked through the services (signed and logged)."""

    list_display = ("number", "kind", "issued_at", "revoked_at")
    search_fields = ("number",)
    raw_id_fields = ("verification",)

    def has_change_permission(self, request: HttpRequest, obj: Certificate | None = None) -> bool:
        return False
