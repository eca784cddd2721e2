"""Engines report progress through a callback ``progress(percent, message, partial=None)``; the
job layer turns it into Job row updates and may raise from it to stop an engine (cancellation).
``partial`` is an optional JSON object of results so far (a training run's loss curve), shown
on the job page while the job runs."""


def no_progress(percent, message="", partial=None):
    """The default callback: report nothing."""
