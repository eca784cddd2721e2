from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self):
        from registry.signals import gate_judge_provide, validation_requested

        from .gates import gate_results
        from .kind_table import kinds_install
        from .kinds import KINDS
        from .services import validate_registered_version

        # Registering a version without a signature asks for validation: a validate job.
        validation_requested.connect(validate_registered_version, dispatch_uid="jobs.validate_registered_version")
        # Moving a gated alias (production) asks for the gates' verdict on benchmark results.
        gate_judge_provide(gate_results)
        # Job services find the kinds by name in the kind table; the kinds call the services.
        kinds_install(KINDS)
