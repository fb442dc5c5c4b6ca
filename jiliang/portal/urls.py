"""Public pages: no sign-in (一器一码 QR lookup, certificate check)."""

from django.urls import path, re_path

from jiliang.portal import views

app_name = "portal"

urlpatterns = [
    path("q/<str:qr_token>/", views.public_instrument, name="instrument"),
    path("c/verify/", views.certificate_check, name="certificate_check"),
    # a certificate's QR link: /c/JL1:… (the payload may hold "/", so only JL payloads are routed here)
    re_path(r"^c/(?P<payload>JL\d+:.+)$", views.certificate_deep_link, name="certificate_link"),
]
