from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from jiliang.core import context

_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# Pages load only what the package serves: no CDN, no inline script (htmx and ECharts are vendored).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; "
    "object-src 'none'"
)
# The OpenAPI page is Swagger UI served by django-ninja from the package's own static files; it needs
# an inline bootstrap script.
CSP_DOCS = CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")


class RequestContextMiddleware:
    """Gives every request an id (kept from a sane X-Request-ID header) for the change log and logs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _SAFE_ID.match(incoming) else context.new_request_id()
        token = context.set_request_id(rid)
        try:
            response = self.get_response(request)
        finally:
            context.reset_request_id(token)
        response["X-Request-ID"] = rid
        return response


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = CSP_DOCS if request.path.startswith("/api/docs") else CSP
        return response
