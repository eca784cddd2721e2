"""What the registry announces to, and asks of, the apps above it, so that it never imports them.

``validation_requested(version, user)`` is sent inside the transaction that registers a version
without a known io_signature (an upload, the API, the demo). The jobs app answers it by queueing
the validate job (jobs/apps.py), in the same transaction: the version and its job commit together
or not at all. Registering and starting validation stay one use case while the dependency runs one
way, jobs -> registry.

``gate_results(version)`` judges the promotion gates of a version's model. Gates are the
registry's, but they are judged on benchmark results, which jobs owns: the jobs app provides the
judge when it is ready (``gate_judge_provide(jobs.gates.gate_results)`` in jobs/apps.py), and
``alias_set`` asks it before moving a gated alias, also while a version is being registered.
"""

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

validation_requested = Signal()

_gate_judge = None


def gate_judge_provide(judge):
    """Set the function that evaluates a version's promotion gates: ``judge(version)`` returns one
    result dict per gate of its model (jobs.gates.gate_results)."""
    global _gate_judge
    _gate_judge = judge


def gate_results(version):
    if _gate_judge is None:
        raise ImproperlyConfigured("Promotion gates are judged by the jobs app: add 'jobs' to INSTALLED_APPS.")
    return _gate_judge(version)
