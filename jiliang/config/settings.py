"""Django settings for Jiliang.  Everything a deployment changes comes from the environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import django_stubs_ext
from django.utils.translation import gettext_lazy as _

from jiliang.config import dburl

django_stubs_ext.monkeypatch()  # lets admin/queryset classes be subscripted for the type checker

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("JILIANG_DEBUG", "") == "1"
SECRET_KEY = os.environ.get("JILIANG_SECRET_KEY") or ""
if not SECRET_KEY:
    # The embedded default keeps a generated key next to its database so sessions survive restarts.
    _key_file = dburl.default_sqlite_path().parent / "secret_key"
    try:
        _key_file.parent.mkdir(parents=True, exist_ok=True)
        if not _key_file.exists():
            _key_file.write_text(secrets.token_urlsafe(50))
            _key_file.chmod(0o600)
        SECRET_KEY = _key_file.read_text().strip()
    except OSError:
        SECRET_KEY = secrets.token_urlsafe(50)

_hosts = os.environ.get("JILIANG_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
ALLOWED_HOSTS = [h for h in _hosts.split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("JILIANG_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "jiliang.core",
    "jiliang.registry",
    "jiliang.accounts",
    "jiliang.verification",
    "jiliang.monitoring",
    "jiliang.supervision",
    "jiliang.factory",
    "jiliang.portal",
    "jiliang.analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "jiliang.core.middleware.RequestContextMiddleware",
    "jiliang.core.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jiliang.config.urls"
WSGI_APPLICATION = "jiliang.config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "jiliang.core.context_processors.nav",
            ],
        },
    },
]

DATABASES = {"default": dburl.parse(os.environ.get("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Login throttling (jiliang.accounts.throttle): failures per username+IP within the window.
LOGIN_MAX_FAILURES = int(os.environ.get("JILIANG_LOGIN_MAX_FAILURES", "5"))
LOGIN_WINDOW_SECONDS = int(os.environ.get("JILIANG_LOGIN_WINDOW_SECONDS", "900"))

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("JILIANG_CACHE_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": os.environ["JILIANG_CACHE_URL"]}}

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("简体中文")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Project-level static files: the app's CSS/JS and the vendored htmx and ECharts.
STATICFILES_DIRS = [BASE_DIR / "static"]
# Vendored assets (htmx, ECharts) are served from the package by WhiteNoise: no CDN, no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
STATIC_ROOT = os.environ.get("JILIANG_STATIC_ROOT") or None  # only for `collectstatic` behind a web server

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
if os.environ.get("JILIANG_HTTPS") == "1":
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

EMAIL_BACKEND = os.environ.get("JILIANG_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("JILIANG_LOG_LEVEL", "WARNING")},
}

# Electronic certificates (ADR 0006)
JILIANG_CERT_ALGORITHM = os.environ.get("JILIANG_CERT_ALGORITHM", "sm2")  # sm2 | ed25519, for new keys
# seals institutions' private keys at rest; SECRET_KEY when empty
JILIANG_KEY_ENCRYPTION_SECRET = os.environ.get("JILIANG_KEY_ENCRYPTION_SECRET", "")
JILIANG_PUBLIC_BASE_URL = os.environ.get("JILIANG_PUBLIC_BASE_URL", "")  # set: the QR holds https://…/c/JL1:…
JILIANG_PDF_FALLBACK_FONT = os.environ.get("JILIANG_PDF_FALLBACK_FONT", "")  # PATH[#FACE] for rare characters

# Registry settings: configurable defaults (see docs/ARCHITECTURE.md).
JILIANG_PAGE_SIZE = 50
JILIANG_MAX_PAGE_SIZE = 500
JILIANG_DUE_SOON_DAYS = int(os.environ.get("JILIANG_DUE_SOON_DAYS", "30"))
# Raw telemetry retention (原始数据保留期) in days; the worker prunes older records nightly, keeping the evidence
# of alerts still under follow-up.  Default two years: the limitation period for administrative penalties
# (《行政处罚法》第三十六条).  0 keeps everything.
JILIANG_TELEMETRY_RETENTION_DAYS = int(os.environ.get("JILIANG_TELEMETRY_RETENTION_DAYS", "730"))
