"""Public pages (no sign-in).  They read only through the public selectors, which return public fields
and nothing else (no contact data, no keys, no tokens)."""

from __future__ import annotations

import re

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from jiliang.core.errors import NotFound
from jiliang.portal.templatetags.jiliang_ui import localized_name
from jiliang.registry import selectors
from jiliang.verification.certificates import certificate_verify

# QR tokens are URL-safe base64 (new_qr_token: 22 characters); anything else is not looked up at all.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


def public_instrument(request: HttpRequest, qr_token: str) -> HttpResponse:
    """``/q/<qr_token>/``: what a phone shows after scanning an instrument's label (一器一码)."""
    if not _TOKEN_RE.match(qr_token):
        raise Http404("no instrument carries this code")
    try:
        info = selectors.public_instrument_get(qr_token=qr_token)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    response = render(request, "portal/instrument.html", {
        "info": info,
        "type_name": localized_name(info.type_name, info.type_name_en),
        "region_name": localized_name(info.region_name, info.region_name_en),
    })
    response["X-Robots-Tag"] = "noindex"
    return response


# A pasted payload is at most what a QR code holds; anything longer is not looked at.
_MAX_PAYLOAD = 4096


def certificate_check(request: HttpRequest) -> HttpResponse:
    """``/c/verify/``: paste a certificate's QR text (or open ``/c/<payload>``) and see whether it is
    genuine, by whom it was issued and whether it was revoked (证书真伪查验)."""
    payload = request.GET.get("payload", "")[:_MAX_PAYLOAD + 1]
    return _certificate_page(request, payload)


def certificate_deep_link(request: HttpRequest, payload: str) -> HttpResponse:
    """``/c/JL1:…``: what a phone opens when the certificate's QR code holds a link."""
    return _certificate_page(request, payload)


def _certificate_page(request: HttpRequest, payload: str) -> HttpResponse:
    check = None
    too_long = len(payload) > _MAX_PAYLOAD
    if payload.strip() and not too_long:
        check = certificate_verify(payload)
    response = render(request, "portal/certificate_verify.html", {
        "payload": payload if not too_long else "", "check": check, "too_long": too_long,
    })
    response["X-Robots-Tag"] = "noindex"
    response["Cache-Control"] = "no-store"
    return response
