"""Sign-in and sign-out pages.  Login throttling is :mod:`jiliang.accounts.throttle`; this view only
reports failures and successes to it and refuses while it says the account or address is locked."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from jiliang.accounts import throttle
from jiliang.accounts.roles import Scope


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


# ---------------------------------------------------------------------------------------------- API tokens

@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    """``/tokens/``: the organisation's API tokens for machine clients; a new token is shown once."""
    from jiliang.accounts import selectors, services
    from jiliang.core.errors import JiliangError, NotFound

    scope = Scope.of(request.user)
    if scope.org_id is None and not scope.is_admin:
        raise DjangoPermissionDenied(_("只有隶属于单位的账户才能管理接口令牌"))
    new_token = ""
    error = ""
    if request.method == "POST":
        try:
            if request.POST.get("action") == "revoke":
                services.api_token_revoke(actor=request.user, token_id=int(request.POST.get("token_id", "0")))
                messages.success(request, _("令牌已吊销，使用它的客户端将无法再访问接口。"))
                return redirect("accounts:tokens")
            name = (request.POST.get("name") or "").strip()
            if not name:
                error = _("请填写令牌名称（例如设备平台的名称）")
            elif scope.org_id is None:
                error = _("管理员请使用命令行为指定单位创建令牌：jiliang token create")
            else:
                _tok, new_token = services.api_token_create(
                    actor=request.user, name=name, organization_id=scope.org_id, role=scope.role,
                    region_code=getattr(request.user, "region_id", None))
        except NotFound as exc:
            raise Http404(exc.message) from exc
        except (JiliangError, ValueError) as exc:
            error = str(exc)
    tokens = selectors.api_token_list(principal=request.user)
    response = render(request, "accounts/tokens.html", {"tokens": tokens, "new_token": new_token, "error": error})
    if new_token:
        response["Cache-Control"] = "no-store"
    return response


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    """``/notifications/``: the person's own in-app messages; POST marks them all read."""
    from django.core.paginator import Paginator

    from jiliang.accounts.selectors import notification_list as notes
    from jiliang.accounts.services import notifications_mark_read

    if request.method == "POST":
        notifications_mark_read(actor=request.user)
        return redirect("accounts:notifications")
    page = Paginator(notes(principal=request.user), settings.JILIANG_PAGE_SIZE).get_page(request.GET.get("page"))
    unread = notes(principal=request.user, unread_only=True).exists()
    return render(request, "accounts/notifications.html", {"page": page, "notes": page.object_list, "unread": unread})
