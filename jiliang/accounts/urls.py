"""Sign-in and sign-out."""

from django.urls import path

from jiliang.accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("tokens/", views.token_list, name="tokens"),
    path("notifications/", views.notification_list, name="notifications"),
]
