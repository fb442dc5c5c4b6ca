"""Pages of 二检合一; the REST API is in :mod:`jiliang.factory.api`."""

from django.urls import path

from jiliang.factory import views

app_name = "factory"

urlpatterns = [
    path("factory/", views.home, name="home"),
    path("factory/batches/", views.batches, name="batches"),
    path("factory/authorizations/", views.authorization_list, name="authorization_list"),
    path("factory/authorizations/apply/", views.authorization_apply, name="authorization_apply"),
    path("factory/authorizations/<int:pk>/", views.authorization_detail, name="authorization_detail"),
    path("factory/authorizations/<int:pk>/transition/", views.authorization_transition,
         name="authorization_transition"),
    path("factory/authorizations/<int:pk>/rectification/", views.authorization_rectification,
         name="authorization_rectification"),
    path("factory/lots/", views.lot_list, name="lot_list"),
    path("factory/lots/<int:pk>/", views.lot_detail, name="lot_detail"),
    path("factory/lots/<int:pk>/accept/", views.lot_accept, name="lot_accept"),
    path("factory/lots/<int:pk>/reject/", views.lot_reject, name="lot_reject"),
    path("factory/lots/<int:pk>/sample/", views.lot_sample, name="lot_sample"),
    path("factory/install/", views.install, name="install"),
    path("factory/samplings/<int:pk>/", views.sampling_detail, name="sampling_detail"),
    path("factory/samplings/<int:pk>/results/", views.sampling_results, name="sampling_results"),
    path("factory/recalls/", views.recall_list, name="recall_list"),
    path("factory/recalls/<int:pk>/", views.recall_detail, name="recall_detail"),
    path("factory/recalls/<int:pk>/replace/", views.recall_replace, name="recall_replace"),
    path("public/factory/", views.public_list, name="public_list"),
]
