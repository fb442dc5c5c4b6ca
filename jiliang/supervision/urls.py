"""Inspection-plan pages (双随机、一公开); the REST API is in :mod:`jiliang.supervision.api`."""

from django.urls import path

from jiliang.supervision import views

app_name = "supervision"

urlpatterns = [
    path("plans/", views.plan_list, name="plan_list"),
    path("plans/<int:pk>/", views.plan_detail, name="plan_detail"),
    path("plans/<int:pk>/commit/", views.plan_commit, name="plan_commit"),
    path("plans/<int:pk>/draw/", views.plan_draw, name="plan_draw"),
    path("plans/<int:pk>/publish/", views.plan_publish, name="plan_publish"),
    path("public/plans/<int:pk>/", views.public_plan, name="public_plan"),
]
