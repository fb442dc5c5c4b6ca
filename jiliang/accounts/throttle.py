"""Login throttling: after LOGIN_MAX_FAILURES failures for one username (or one address) within
LOGIN_WINDOW_SECONDS, further attempts are refused until the window passes.  Keys are hashed so no
username or address lands in the cache in clear."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _keys(username: str, ip: str) -> list[str]:
    def h(s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()[:32]

    return [f"login-fail:u:{h(username.lower())}", f"login-fail:ip:{h(ip)}"]


def is_locked(username: str, ip: str) -> bool:
    limit = settings.LOGIN_MAX_FAILURES
    # the address limit is looser: many people may share one office address
    counts = [int(cache.get(k, 0)) for k in _keys(username, ip)]
    return counts[0] >= limit or counts[1] >= limit * 4


def record_failure(username: str, ip: str) -> None:
    for k in _keys(username, ip):
        try:
            cache.incr(k)
        except ValueError:
            cache.set(k, 1, timeout=settings.LOGIN_WINDOW_SECONDS)


def reset(username: str, ip: str) -> None:
    cache.delete(_keys(username, ip)[0])
