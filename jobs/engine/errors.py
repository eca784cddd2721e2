"""The one exception type of the compression and evaluation engines."""


class EngineError(Exception):
    """An engine cannot do what was asked. The message says what to change (a parameter, the
    data, the model), in words a user can act on."""


def first_line(exc):
    """The first line of an exception's message (libraries add pages of detail), at most 500
    characters; the exception's type name when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:500].rstrip(".") if text else type(exc).__name__
