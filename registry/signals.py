"""What the registry announces to the apps above it, so that it never imports them.

``validation_requested(version, user)`` is sent inside the transaction that registers a version
without a known io_signature (an upload, the API, the demo). The jobs app answers it by queueing
the validate job (jobs/apps.py), in the same transaction: the version and its job commit together
or not at all. Registering and starting validation stay one use case while the dependency runs one
way, jobs -> registry.
"""

from django.dispatch import Signal

validation_requested = Signal()
