"""Pages of 二检合一; the REST API is in :mod:`jiliang.factory.api`."""

from django.urls import path

from jiliang.factory import views

app_name = "factory"

urlpatterns = [
    path("factory/", views.home, name="home"),
    path("factory/batches/", views.batches, name="batches"),
    path("factory/samplings/<int:pk>/", views.sampling_detail, name="sampling_detail"),
    path("public/factory/", views.public_list, name="public_list"),
]
