"""The telemetry a berth-serve runtime flushes (DESIGN §4), checked by serializers.

``TelemetryFlushSerializer`` turns a flush into what ingestion counts (monitoring.services.
telemetry_ingest validates with it, so every caller of the service is checked alike), each
error under its dotted field (``series.1.latency``) with a message saying what is expected. The
envelope and each series entry are serializers; the maps that may hold thousands of entries (a
latency sketch's buckets, feature counts, batch sizes) are fields checked by one function each,
so a flush is checked in about the time the hand-written checks took. Fields added to the
format later are optional: an older berth-serve (no inference_latency, no batch_sizes, no
request_latency) is accepted as it was.

This module sits in the monitoring layer, below monitoring.services (the API's serializers in
monitoring/serializers.py sit above it), and holds the time checks the raw-events path
(monitoring.events) and the metrics query share.
"""

import math
import uuid
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from berth.core.stats import DEFAULT_ALPHA
from berth.core.timeparse import parse_aware_time
from common.errors import BerthError
from registry.models import ModelVersion
from serving.protocol import ENCODINGS
from serving.telemetry import REQUEST_SKETCHES

MAX_SERIES = 200
MAX_BUCKETS = 5000
# What each part of a flush must be: the error messages, which name the expected shape.
FLUSH_ID = "flush_id must be a UUID (it makes a retried flush count once)."
SECONDS = "seconds must be a number from 0 to 3600."
SERIES = f"series must be a list of at most {MAX_SERIES} entries."
COUNTS = "requests and errors must be whole numbers ≥ 0, errors ≤ requests."
ERROR_KINDS_SHAPE = "error_kinds maps a kind to a whole number ≥ 0."
SKETCH_SHAPE = "A latency sketch is {alpha, buckets: {index: count}, zero_count}."
INFERENCE_SHAPE = 'inference_latency maps the rows of a model run ("1") to a latency sketch of its session.run time.'
REQUEST_SHAPE = (
    f'request_latency maps an encoding ({", ".join(ENCODINGS)}) to the rows of a request ("1") and a latency '
    f"sketch of those requests, at most {REQUEST_SKETCHES} encoding × rows sketches per version and flush "
    "(berth-serve counts the requests past them in latency only)."
)
FEATURES_SHAPE = "features maps a feature name to a list of whole-number counts."
BATCH_SIZES_SHAPE = 'batch_sizes maps the rows of a model run ("8") to how many runs had them.'


def parse_time(text, field):
    """An aware datetime from ISO 8601 text; BerthError naming ``field`` otherwise."""
    try:
        return parse_aware_time(text)
    except ValueError as exc:
        raise BerthError(f"{field.rsplit('.', 1)[-1]} {exc}", field=field) from exc


def telemetry_time(text, field="start"):
    """A telemetry time: parse_time, and within the accepted age."""
    name = field.rsplit(".", 1)[-1]
    moment = parse_time(text, field)
    now = timezone.now()
    if not now - timedelta(days=settings.BERTH_TELEMETRY_MAX_AGE_DAYS) <= moment <= now + timedelta(minutes=5):
        raise BerthError(
            f"{name} is too far in the past or in the future; check the sending host's clock.", field=field
        )
    return moment


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_seconds(value):
    return _is_number(value) and 0 <= value <= 3600


def _is_rows(key):
    """A model run's row count as a JSON key: "8" (ASCII digits, so int() takes it as written)."""
    return isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 9


def check_sketch(value):
    """A latency sketch in the wire format, typed; ValidationError otherwise."""
    buckets = value.get("buckets", {}) if isinstance(value, dict) else None
    if not isinstance(buckets, dict) or len(buckets) > MAX_BUCKETS or not is_count(value.get("zero_count", 0)):
        raise serializers.ValidationError(SKETCH_SHAPE)
    if value.get("alpha", DEFAULT_ALPHA) != DEFAULT_ALPHA:
        raise serializers.ValidationError(f"alpha must be {DEFAULT_ALPHA}: sketches merge only at one accuracy.")
    try:
        buckets = {str(int(key)): count for key, count in buckets.items()}
    except (TypeError, ValueError):
        raise serializers.ValidationError("Latency bucket indexes must be whole numbers.") from None
    if not all(is_count(count) for count in buckets.values()):
        raise serializers.ValidationError("Latency bucket counts must be whole numbers ≥ 0 (no NaN, no negatives).")
    return {"alpha": DEFAULT_ALPHA, "buckets": buckets, "zero_count": value.get("zero_count", 0)}


class REQUIRED:
    """A missing value fails with the field's message. (A class, not an instance, so that it
    stays itself when DRF deep-copies the declared fields.)"""


class CHECKED:
    """A missing value is checked as null, for the check's own message."""


class CheckedField(serializers.Field):
    """A JSON value checked by one function: ``check(value)`` returns it typed or raises
    ValidationError. A missing value takes ``missing`` (a value, or a callable making one), fails
    with ``message`` (REQUIRED) or is checked as null (CHECKED); null is checked like any value sent."""

    def __init__(self, check, *, message=None, missing=REQUIRED, **kwargs):
        self.check = check
        self.missing = missing
        super().__init__(required=missing in (REQUIRED, CHECKED), **kwargs)
        if message is not None:
            self.error_messages.update(required=message, invalid=message)

    def validate_empty_values(self, data):
        if data is not serializers.empty:
            return False, data
        if self.missing is CHECKED:
            return False, None
        if self.missing is REQUIRED:
            self.fail("required")
        return True, self.missing() if callable(self.missing) else self.missing

    def to_internal_value(self, data):
        return self.check(data)

    def to_representation(self, value):
        return value


def _valid(check, message):
    """``check`` as a CheckedField function: the value itself when ``check(value)`` holds."""

    def checked(value):
        if not check(value):
            raise serializers.ValidationError(message)
        return value

    return checked


def _count_field(message, **kwargs):
    return CheckedField(_valid(is_count, message), message=message, **kwargs)


def _check_latency(value):
    return check_sketch(value or {})


def _check_inference(value):
    value = {} if value is None else value
    if not isinstance(value, dict) or len(value) > MAX_SERIES or not all(_is_rows(rows) for rows in value):
        raise serializers.ValidationError(INFERENCE_SHAPE)
    sketches, errors = {}, {}
    for rows, sketch in value.items():
        try:
            sketches[str(int(rows))] = check_sketch(sketch)
        except serializers.ValidationError as exc:
            errors[rows] = exc.detail
    if errors:
        raise serializers.ValidationError(errors)
    return sketches


def _check_request(value):
    """{encoding: {"<rows>": sketch}} of the successful requests (berth-serve since issue 13)."""
    value = {} if value is None else value
    if (
        not isinstance(value, dict)
        or not set(value) <= set(ENCODINGS)
        or not all(isinstance(by_rows, dict) and all(_is_rows(rows) for rows in by_rows) for by_rows in value.values())
        or sum(len(by_rows) for by_rows in value.values()) > REQUEST_SKETCHES
    ):
        raise serializers.ValidationError(REQUEST_SHAPE)
    sketches, errors = {}, {}
    for encoding, by_rows in value.items():
        for rows, sketch in by_rows.items():
            try:
                sketches.setdefault(encoding, {})[str(int(rows))] = check_sketch(sketch)
            except serializers.ValidationError as exc:
                errors[f"{encoding}.{rows}"] = exc.detail
    if errors:
        raise serializers.ValidationError(errors)
    return sketches


def _check_batch_sizes(value):
    if (
        not isinstance(value, dict)
        or len(value) > MAX_BUCKETS
        or not all(_is_rows(rows) and is_count(runs) for rows, runs in value.items())
    ):
        raise serializers.ValidationError(BATCH_SIZES_SHAPE)
    return {str(int(rows)): runs for rows, runs in value.items()}


def _is_error_kinds(value):
    return isinstance(value, dict) and all(isinstance(k, str) and is_count(v) for k, v in value.items())


def _is_features(value):
    return isinstance(value, dict) and all(
        isinstance(name, str) and isinstance(counts, list) and counts and all(is_count(c) for c in counts)
        for name, counts in value.items()
    )


class VersionField(serializers.Field):
    """A version of the endpoint's model, by name, from the versions the flush names (looked up
    once per flush by TelemetryFlushSerializer)."""

    def to_internal_value(self, data):
        version = self.context["versions"].get(data) if isinstance(data, str) else None
        if version is None:
            raise serializers.ValidationError(f"{self.context['endpoint'].model.name} has no version {data!r}.")
        return version

    def validate_empty_values(self, data):
        if data is serializers.empty or data is None:
            return False, None  # named in the message like any unknown version
        return super().validate_empty_values(data)

    def to_representation(self, value):
        return value.version


class SeriesSerializer(serializers.Serializer):
    """One version's counts over the flush."""

    default_error_messages = dict.fromkeys(("invalid", "null"), "Each series entry must be an object.")

    version = VersionField()
    requests = _count_field(COUNTS)
    errors = _count_field(COUNTS, missing=0)
    error_kinds = CheckedField(_valid(_is_error_kinds, ERROR_KINDS_SHAPE), message=ERROR_KINDS_SHAPE, missing=dict)
    latency = CheckedField(_check_latency, message=SKETCH_SHAPE, missing=dict)
    inference_latency = CheckedField(_check_inference, message=INFERENCE_SHAPE, missing=dict)
    request_latency = CheckedField(_check_request, message=REQUEST_SHAPE, missing=dict)
    features = CheckedField(_valid(_is_features, FEATURES_SHAPE), message=FEATURES_SHAPE, missing=dict)
    batch_sizes = CheckedField(_check_batch_sizes, message=BATCH_SIZES_SHAPE, missing=dict)

    def validate(self, attrs):
        if attrs["errors"] > attrs["requests"]:
            raise serializers.ValidationError({"requests": [COUNTS]})
        return attrs


def _check_flush_id(value):
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise serializers.ValidationError(FLUSH_ID) from None


def _check_start(value):
    try:
        return telemetry_time(value)
    except BerthError as exc:
        raise serializers.ValidationError(exc.message) from None


class TelemetryFlushSerializer(serializers.Serializer):
    """A berth-serve flush: {flush_id, start, seconds, dropped, series: [...]}; ``context``
    needs the ``endpoint`` it was sent for. Unknown keys (endpoint, replica) are read elsewhere."""

    default_error_messages = dict.fromkeys(("invalid", "null"), "The body must be a JSON object.")

    flush_id = CheckedField(_check_flush_id, message=FLUSH_ID)
    start = CheckedField(_check_start, missing=CHECKED)
    seconds = CheckedField(_valid(_is_seconds, SECONDS), message=SECONDS, missing=10)
    dropped = _count_field("dropped must be a whole number ≥ 0.", missing=0)
    series = SeriesSerializer(
        many=True,
        max_length=MAX_SERIES,
        error_messages=dict.fromkeys(("not_a_list", "max_length", "required", "null"), SERIES),
    )

    def to_internal_value(self, data):
        # The versions every entry names, in one query.
        series = data.get("series") if isinstance(data, dict) else None
        names = [s.get("version") for s in series if isinstance(s, dict)] if isinstance(series, list) else []
        endpoint = self.context["endpoint"]
        self.context["versions"] = {
            v.version: v
            for v in ModelVersion.objects.filter(
                model_id=endpoint.model_id, version__in=[n for n in names if isinstance(n, str)]
            )
        }
        return super().to_internal_value(data)
