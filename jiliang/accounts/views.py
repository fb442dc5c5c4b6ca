"""Sign-in and sign-out pages.  Login throttling is :mod:`jiliang.accounts.throttle`; this view only
reports failures and successes to it and refuses while it says the account or address is locked."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from jiliang.accounts import throttle


def client_ip(request: HttpRequest) -> str:
    """The peer address.  Only REMOTE_ADDR: forwarded headers are client-controlled and would let an
    attacker pick a fresh address for every guess."""
    return str(request.META.get("REMOTE_ADDR") or "unknown")


class LoginForm(AuthenticationForm):
    """Django's form with Chinese source messages (translated to English by the catalogue)."""

    error_messages = {
        "invalid_login": gettext_lazy("用户名或密码不正确。请注意两者都区分大小写。"),
        "inactive": gettext_lazy("该账户已停用。"),
    }


class LoginView(auth_views.LoginView):
    """``/login/``: Django's sign-in with throttling of repeated failures."""

    template_name = "accounts/login.html"
    form_class = LoginForm
    redirect_authenticated_user = True
    extra_context = {"hide_login_link": True}

    def _throttle_key(self) -> tuple[str, str]:
        username = str(self.request.POST.get("username", ""))[:150].strip()
        return username, client_ip(self.request)

    def _locked_response(self) -> HttpResponse:
        minutes = max(1, settings.LOGIN_WINDOW_SECONDS // 60)
        # An unbound form: binding the posted data would run authenticate() and check the password.
        form = self.form_class(self.request, initial={"username": self._throttle_key()[0]})
        context = self.get_context_data(form=form, locked=True, lock_minutes=minutes)
        return self.render_to_response(context, status=429)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username, ip = self._throttle_key()
        if throttle.is_locked(username, ip):
            return self._locked_response()
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        throttle.reset(*self._throttle_key())
        return super().form_valid(form)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        username, ip = self._throttle_key()
        throttle.record_failure(username, ip)
        if throttle.is_locked(username, ip):
            return self._locked_response()
        return super().form_invalid(form)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("locked", False)
        context["page_title"] = _("登录")
        return context


class LogoutView(auth_views.LogoutView):
    """``/logout/`` (POST only, as Django 5 requires)."""
