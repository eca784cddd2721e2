from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from jobs import views as job_views

from . import views
from .login import ThrottledLoginView

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/tokens/", views.api_tokens, name="tokens"),
    path("workers/", views.workers, name="workers"),
    path("audit/", views.audit_log, name="audit"),
    path("compare/", job_views.compare, name="compare"),
    path("compare/recommendations/", job_views.compare_recommendations, name="compare-recommendations"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("dashboard.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("", include("registry.urls")),
    path("", include("jobs.urls")),
    path("", include("monitoring.urls")),
]
