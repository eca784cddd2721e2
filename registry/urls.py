from django.urls import path

from . import views

app_name = "registry"

urlpatterns = [
    path("models/", views.model_list, name="models"),
    path("new/model/", views.model_create, name="model-create"),
    path("models/<str:name>/", views.model_detail, name="model"),
    path("models/<str:name>/aliases/", views.alias_set, name="alias-set"),
    path("models/<str:name>/aliases/<slug:alias>/remove/", views.alias_remove, name="alias-remove"),
    path("models/<str:name>/gates/", views.gate_create, name="gate-create"),
    path("models/<str:name>/gates/<int:gate_id>/delete/", views.gate_delete, name="gate-delete"),
    path("models/<str:name>/versions/<str:version>/", views.version_detail, name="version"),
    path("models/<str:name>/versions/<str:version>/download/", views.version_download, name="version-download"),
    path("models/<str:name>/versions/<str:version>/validate/", views.version_validate, name="version-validate"),
    path("upload/", views.upload, name="upload"),
    path("targets/", views.target_list, name="targets"),
    path("new/target/", views.target_create, name="target-create"),
]
