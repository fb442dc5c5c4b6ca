from django.contrib import admin
from django.http import HttpRequest

from jiliang.core.models import ChangeLog


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
