"""Engines report progress through a callback ``progress(percent, message)``; the job layer
turns it into Job row updates and may raise from it to stop an engine (cancellation)."""


def no_progress(percent, message=""):
    """The default callback: report nothing."""
