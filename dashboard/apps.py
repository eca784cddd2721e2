from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self):
        from . import login  # noqa: F401  (connects the log-in throttle's signal receivers)
        from . import staticfiles  # noqa: F401  (registers the collectstatic check)
