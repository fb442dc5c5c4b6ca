"""Turn ``DATABASE_URL`` into a Django ``DATABASES['default']`` entry (sqlite:/// or postgresql://)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


def default_sqlite_path() -> Path:
    """The embedded database: ``$JILIANG_HOME/jiliang.sqlite3`` (default ``~/.local/share/jiliang``)."""
    home = os.environ.get("JILIANG_HOME") or str(Path.home() / ".local" / "share" / "jiliang")
    return Path(home) / "jiliang.sqlite3"


def sqlite_config(path: Path | str) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # WAL lets the web server read while the worker writes; NORMAL sync is durable in WAL mode
            # across application crashes (only an OS crash can lose the last transactions).
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;"
            " PRAGMA foreign_keys=ON;",
            "transaction_mode": "IMMEDIATE",
        },
        "TEST": {"NAME": None},
    }


def parse(url: str | None) -> dict[str, Any]:
    if not url:
        path = default_sqlite_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite_config(path)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:////var/lib/x.sqlite3 -> /var/lib/x.sqlite3 (absolute); sqlite:///x.sqlite3 -> ./x.sqlite3
        rest = unquote(url.split("://", 1)[1])
        if not rest.startswith("/") or rest in ("/", "//"):
            raise ValueError("DATABASE_URL sqlite:/// needs a file path, e.g. sqlite:////var/lib/jiliang/x.sqlite3")
        rest = rest[1:]
        if rest == ":memory:":
            return sqlite_config(":memory:")
        path = Path(rest).resolve() if not rest.startswith("/") else Path("/" + rest.lstrip("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite_config(path)
    if scheme in ("postgres", "postgresql", "pgsql"):
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "jiliang",
            "USER": unquote(parts.username or "") or os.environ.get("PGUSER", "postgres"),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": query,
            "CONN_MAX_AGE": 60,
            "TEST": {"NAME": os.environ.get("JILIANG_TEST_DB_NAME") or None},
        }
    raise ValueError(f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite:/// or postgresql://)")
