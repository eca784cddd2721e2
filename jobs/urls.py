from django.urls import path

from . import views

app_name = "jobs"

# Mounted at the site's root by dashboard/urls.py: the jobs pages, and starting a job from a
# version's page.
urlpatterns = [
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/<int:job_id>/", views.job_detail, name="job"),
    path("jobs/<int:job_id>/status/", views.job_status, name="job-status"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("models/<str:name>/versions/<str:version>/run/<str:kind>/", views.version_run, name="version-run"),
]
