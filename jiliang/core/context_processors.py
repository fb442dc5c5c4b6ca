from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def nav(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    role = getattr(user, "role", None) if user is not None and user.is_authenticated else None
    return {"nav_role": role}
