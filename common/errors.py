"""One exception type for domain errors, and the API's error shape.

Services raise ``BerthError(message, field=..., status=...)``; the API answers
``{"detail": "...", "errors": {field: [...]}}`` and HTML views show the message on the form.
"""

import logging

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


logger = logging.getLogger(__name__)

# Connection lost, server gone or restarting, SQLite busy past its timeout: worth retrying.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_UNAVAILABLE_MESSAGE = (
    "The database did not answer (its connection was lost, or it is busy), so this "
    "request did not finish. Try again in a moment."
)
DATABASE_RETRY_AFTER = {"Retry-After": "5"}


class BerthError(Exception):
    """A request that cannot be done as asked, with a message saying what to do instead."""

    status = status.HTTP_400_BAD_REQUEST
    headers = {}

    def __init__(self, message, *, field=None, status=None, extra=None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status
        self.extra = extra or {}

    def as_payload(self):
        errors = {self.field: [self.message]} if self.field else {}
        return {"detail": self.message, "errors": errors, **self.extra}


class NotFound(BerthError):
    status = status.HTTP_404_NOT_FOUND


class Conflict(BerthError):
    status = status.HTTP_409_CONFLICT


class TooLarge(BerthError):
    status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class InvalidModelFile(BerthError):
    status = status.HTTP_422_UNPROCESSABLE_ENTITY


class Busy(BerthError):
    """A transient conflict (someone else holds the resource): retry shortly."""

    status = status.HTTP_503_SERVICE_UNAVAILABLE
    headers = {"Retry-After": "2"}


def _flatten(errors):
    """DRF validation details as {field: [messages]}, nested fields joined with dots."""
    if isinstance(errors, list):
        if errors and all(isinstance(e, dict) for e in errors):
            flat = {}
            for index, item in enumerate(errors):
                for key, messages in _flatten(item).items():
                    flat[f"{index}.{key}" if key != "non_field_errors" else str(index)] = messages
            return flat
        return {"non_field_errors": [str(e) for e in errors]}
    if isinstance(errors, dict):
        flat = {}
        for key, value in errors.items():
            if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)):
                for sub, messages in _flatten(value).items():
                    flat[f"{key}.{sub}" if sub != "non_field_errors" else key] = messages
            else:
                flat[key] = [str(v) for v in (value if isinstance(value, list) else [value])]
        return flat
    return {"non_field_errors": [str(errors)]}


def _summary(errors):
    parts = []
    for field, messages in errors.items():
        prefix = "" if field == "non_field_errors" else f"{field}: "
        parts.append(prefix + " ".join(messages))
    return "; ".join(parts) or "Invalid input."


def api_exception_handler(exc, context):
    if isinstance(exc, BerthError):
        return Response(exc.as_payload(), status=exc.status, headers=exc.headers)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("database unavailable during %s: %s", context["request"].path, exc)
        return Response(
            {"detail": DATABASE_UNAVAILABLE_MESSAGE, "errors": {}},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers=DATABASE_RETRY_AFTER,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        response.data = {"detail": _summary(errors), "errors": errors}
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = {"detail": str(detail), "errors": {}}
    return response
