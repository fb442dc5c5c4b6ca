"""Public pages: no sign-in (一器一码 QR lookup)."""

from django.urls import path

from jiliang.portal import views

app_name = "portal"

urlpatterns = [
    path("q/<str:qr_token>/", views.public_instrument, name="instrument"),
]
