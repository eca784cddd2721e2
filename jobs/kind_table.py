"""The kinds of job by name, as job services find them.

The kinds (jobs/kinds/) call job services (a convert job records its output, a compress job
queues its child's benchmark), and job services look a job's kind up by its name to check its
parameters, run it and undo it. So the kinds sit above the services, and the services find them
here: the jobs app installs jobs.kinds.KINDS when it is ready (jobs/apps.py), and no module of
jobs imports one that imports it back.
"""

from django.core.exceptions import ImproperlyConfigured

_KINDS = {}


def kinds_install(kinds):
    """Make ``kinds`` ({name: JobKind}) the kinds job services run."""
    _KINDS.clear()
    _KINDS.update(kinds)


def kind_get(name):
    """The JobKind named ``name``; KeyError for an unknown name."""
    if not _KINDS:
        raise ImproperlyConfigured("No job kinds are installed: the jobs app installs them when Django is set up.")
    return _KINDS[name]


def kind_names():
    return list(_KINDS)
