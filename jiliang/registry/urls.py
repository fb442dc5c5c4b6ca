"""Registry pages (the REST API is in :mod:`jiliang.registry.api`)."""

from django.urls import path

from jiliang.registry import views

app_name = "registry"

urlpatterns = [
    path("instruments/", views.instrument_list, name="instrument_list"),
    path("instruments/<int:pk>/", views.instrument_detail, name="instrument_detail"),
    path("instruments/<int:pk>/edit/", views.instrument_edit, name="instrument_edit"),
    path("instruments/<int:pk>/label.svg", views.instrument_label_svg, name="instrument_label_svg"),
    path("instruments/<int:pk>/label.png", views.instrument_label_png, name="instrument_label_png"),
    path("organizations/", views.organization_list, name="organization_list"),
    path("organizations/<int:pk>/", views.organization_detail, name="organization_detail"),
    path("places/", views.place_list, name="place_list"),
    path("places/<int:pk>/", views.place_detail, name="place_detail"),
    path("import/", views.import_upload, name="import"),
    path("import/confirm/", views.import_confirm, name="import_confirm"),
]
