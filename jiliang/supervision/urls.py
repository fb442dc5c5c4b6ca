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

urlpatterns += [
    path("tasks/", views.task_list, name="task_list"),
    path("tasks/<int:pk>/", views.task_detail, name="task_detail"),
    path("tasks/<int:pk>/instruments/<int:instrument_id>/finding/", views.finding_create, name="finding_create"),
    path("tasks/<int:pk>/complete/", views.task_complete, name="task_complete"),
    path("cases/", views.case_list, name="case_list"),
    path("cases/<int:pk>/", views.case_detail, name="case_detail"),
    path("cases/<int:pk>/rectify/", views.case_rectify, name="case_rectify"),
    path("conflicts/", views.conflict_list, name="conflict_list"),
    path("plans/<int:pk>/results/publish/", views.results_publish, name="results_publish"),
]

urlpatterns += [
    path("credit/config/", views.credit_config, name="credit_config"),
    path("credit/entities/<int:org_id>/", views.credit_explanation, name="credit_explanation"),
]
