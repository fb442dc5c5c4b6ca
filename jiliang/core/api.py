"""Shared API machinery: authentication (session or bearer token), the error envelope, pagination."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Schema
from ninja.security import APIKeyCookie, HttpBearer

from jiliang.accounts.models import TokenPrincipal


class SessionAuth(APIKeyCookie):
    """A logged-in browser session; CSRF is enforced for unsafe methods."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self) -> None:
        super().__init__(csrf=True)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            request.principal = user  # type: ignore[attr-defined]
            return user
        return None


class TokenAuth(HttpBearer):
    """``Authorization: Bearer jl_...``: an organisation's API token (stored hashed)."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        from jiliang.accounts.services import api_token_authenticate

        tok = api_token_authenticate(token)
        if tok is None:
            return None
        principal = TokenPrincipal(tok)
        request.principal = principal  # type: ignore[attr-defined]
        return principal


AUTH = [TokenAuth(), SessionAuth()]


def principal(request: HttpRequest) -> Any:
    return getattr(request, "principal", None) or request.auth  # type: ignore[attr-defined]


class ErrorDetail(Schema):
    row: int | None = None
    field: str | None = None
    reason: str
    value: str | None = None


class ErrorBody(Schema):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorEnvelope(Schema):
    """Every error response: ``{"error": {"code", "message", "details": [{"row", "field", "reason"}]}}``."""

    error: ErrorBody


ERRORS: dict[int, type[Schema]] = {400: ErrorEnvelope, 401: ErrorEnvelope, 403: ErrorEnvelope,
                                   404: ErrorEnvelope, 413: ErrorEnvelope, 422: ErrorEnvelope}

T = TypeVar("T")


class Page(Schema, Generic[T]):
    count: int
    limit: int
    offset: int
    items: list[T]


def paginate(qs: QuerySet[Any], limit: int | None, offset: int | None) -> dict[str, Any]:
    lim = max(1, min(limit or settings.JILIANG_PAGE_SIZE, settings.JILIANG_MAX_PAGE_SIZE))
    off = max(0, offset or 0)
    return {"count": qs.count(), "limit": lim, "offset": off, "items": list(qs[off : off + lim])}
