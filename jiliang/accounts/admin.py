from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from jiliang.accounts.models import ApiToken, User


@admin.register(User)
class UserAdmin(BaseUserAdmin[User]):
    list_display = ("username", "role", "organization", "region", "is_active")
    list_filter = ("role", "is_active")
    fieldsets = (*(BaseUserAdmin.fieldsets or ()), ("Jiliang", {"fields": ("role", "organization", "region")}))
    raw_id_fields = ("organization",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ("name", "prefix", "organization", "role", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "token_hash", "created_at", "last_used_at")
    raw_id_fields = ("organization",)
