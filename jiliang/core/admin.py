from typing import Any, Generic, TypeVar

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from jiliang.core.models import ChangeLog, JobLease

M = TypeVar("M", bound=models.Model)


class ReadOnlyAdmin(admin.ModelAdmin[M], Generic[M]):
    """Shown, never written through the admin: the rows are written by the application only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChangeLog)
class ChangeLogAdmin(ReadOnlyAdmin[ChangeLog]):
    list_display = ("at", "actor_label", "action", "model", "object_repr", "request_id")
    list_filter = ("action", "model")


@admin.register(JobLease)
class JobLeaseAdmin(ReadOnlyAdmin[JobLease]):
    """When each scheduled job last finished and who holds it now (the workers write it)."""

    list_display = ("name", "done_period", "finished_at", "period", "holder", "lease_until")
