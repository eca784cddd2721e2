"""The one exception type of the compression and evaluation engines."""


class EngineError(Exception):
    """An engine cannot do what was asked. The message says what to change (a parameter, the
    data, the model), in words a user can act on."""
