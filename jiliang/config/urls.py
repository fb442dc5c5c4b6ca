from django.contrib import admin
from django.urls import include, path

from jiliang.config.api import api

urlpatterns = [
    path("api/", api.urls),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("jiliang.accounts.urls")),
    path("", include("jiliang.portal.urls")),
    path("", include("jiliang.registry.urls")),
    path("", include("jiliang.verification.urls")),
    path("", include("jiliang.analytics.urls")),
    path("", include("jiliang.monitoring.urls")),
    path("", include("jiliang.supervision.urls")),
    path("", include("jiliang.factory.urls")),
]
