from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self):
        from registry.signals import validation_requested

        from .services import validate_registered_version

        # Registering a version without a signature asks for validation: a validate job.
        validation_requested.connect(validate_registered_version, dispatch_uid="jobs.validate_registered_version")
