"""Alert pages (预警); the REST API is in :mod:`jiliang.monitoring.api`."""

from django.urls import path

from jiliang.monitoring import views

app_name = "monitoring"

urlpatterns = [
    path("alerts/", views.alert_list, name="alert_list"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert_detail"),
    path("alerts/<int:pk>/task/", views.alert_task_open, name="alert_task_open"),
]
