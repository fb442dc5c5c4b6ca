from django.contrib import admin
from django.http import HttpRequest

from jiliang.core.models import ChangeLog, JobLease


@admin.register(ChangeLog)
class ChangeLogAdmin(admin.ModelAdmin[ChangeLog]):
    list_display = ("at", "actor_label", "action", "model", "object_repr", "request_id")
    list_filter = ("action", "model")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ChangeLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ChangeLog | None = None) -> bool:
        return False


@admin.register(JobLease)
class JobLeaseAdmin(admin.ModelAdmin[JobLease]):
    """When each scheduled job last finished and who holds it now (read-only: the workers write it)."""

    list_display = ("name", "done_period", "finished_at", "period", "holder", "lease_until")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobLease | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: JobLease | None = None) -> bool:
        return False
