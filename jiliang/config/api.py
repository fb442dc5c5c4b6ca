"""The django-ninja API root: ``/api/v1/``, OpenAPI at ``/api/docs``, one error envelope."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer

from jiliang.core.api import AUTH
from jiliang.core.errors import JiliangError


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> Any:
        return orjson.dumps(data, default=str)


api = NinjaAPI(
    title="Jiliang 计量监管平台 API",
    version="1",
    description=(
        "Registry, verification and supervision API.  Authenticate with a browser session or "
        "`Authorization: Bearer <token>`.  Every error is `{\"error\": {\"code\", \"message\", \"details\"}}`."
    ),
    urls_namespace="api",
    docs_url="/docs",
    auth=AUTH,
    renderer=OrjsonRenderer(),
)


def _envelope(request: HttpRequest, status: int, code: str, message: str, details: list[Any] | None = None
              ) -> HttpResponse:
    return api.create_response(request, {"error": {"code": code, "message": message, "details": details or []}},
                               status=status)


@api.exception_handler(JiliangError)
def on_jiliang_error(request: HttpRequest, exc: JiliangError) -> HttpResponse:
    return _envelope(request, exc.status, exc.code, exc.message, [p.as_dict() for p in exc.details])


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    details = []
    for e in exc.errors:
        loc = [str(x) for x in e.get("loc", []) if x not in ("body", "payload", "query", "path", "form")]
        details.append({"field": ".".join(loc) or None, "reason": str(e.get("msg", "invalid"))})
    return _envelope(request, 422, "validation_failed", "the request is not valid", details)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _envelope(request, 401, "unauthenticated", "log in or send a valid API token")


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _envelope(request, exc.status_code, "error", str(exc))


@api.exception_handler(Http404)
def on_404(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _envelope(request, 404, "not_found", "not found")


def _routers() -> None:
    from jiliang.registry.api import router as registry_router
    from jiliang.verification.api import router as verification_router

    api.add_router("/v1/", registry_router)
    api.add_router("/v1/", verification_router)
    from jiliang.monitoring.api import router as monitoring_router

    api.add_router("/v1/", monitoring_router)
    from jiliang.supervision.api import public_router as supervision_public
    from jiliang.supervision.api import router as supervision_router

    api.add_router("/v1/", supervision_router)
    api.add_router("/v1/", supervision_public)
    from jiliang.factory.api import public_router as factory_public
    from jiliang.factory.api import router as factory_router

    api.add_router("/v1/", factory_router)
    api.add_router("/v1/", factory_public)


_routers()
