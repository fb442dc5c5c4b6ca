"""Dashboards and reports."""

from django.urls import path

from jiliang.analytics import views

app_name = "analytics"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
