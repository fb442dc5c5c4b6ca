from django.urls import path

from jiliang.verification import views

app_name = "verification"

urlpatterns = [
    path("verifications/due/", views.due_list, name="due_list"),
]
