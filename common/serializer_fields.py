"""Field types shared by the apps' serializers."""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

METADATA_MAX_CHARS = 64 * 1024
NUL_MESSAGE = "Null characters are not allowed."


def holds_nul(value):
    """Whether a JSON value has a NUL character in a string or a key: PostgreSQL can store
    neither in text nor in jsonb (a 500, where SQLite would take it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


def no_nul(value):
    """A validator for JSON fields."""
    if holds_nul(value):
        raise serializers.ValidationError(NUL_MESSAGE)


@extend_schema_field(OpenApiTypes.OBJECT)
class JSONObjectField(serializers.Field):
    """A JSON object, given as an object (JSON bodies) or as a JSON string (multipart forms)."""

    default_error_messages = {
        "invalid": 'Must be a JSON object, e.g. {{"commit": "abc123"}}.',
        "too_long": f"Must be at most {METADATA_MAX_CHARS:,} characters of JSON.",
        "null_characters": NUL_MESSAGE,
    }

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                data = json.loads(data) if data.strip() else {}
            except ValueError:
                self.fail("invalid")
        if not isinstance(data, dict):
            self.fail("invalid")
        if len(json.dumps(data)) > METADATA_MAX_CHARS:
            self.fail("too_long")
        if holds_nul(data):
            self.fail("null_characters")
        return data

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class TagsField(serializers.Field):
    """A list of short strings; multipart forms may send "a,b,c" or the field repeated."""

    default_error_messages = {
        "invalid": "Tags are a list of strings of at most 50 characters (at most 20 tags).",
        "null_characters": NUL_MESSAGE,
    }

    def get_value(self, dictionary):
        if hasattr(dictionary, "getlist") and self.field_name in dictionary:
            values = dictionary.getlist(self.field_name)
            return values if len(values) > 1 else values[0]
        return super().get_value(dictionary)

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [t.strip() for t in data.split(",") if t.strip()]
        if not isinstance(data, list) or len(data) > 20:
            self.fail("invalid")
        if not all(isinstance(t, str) and 0 < len(t) <= 50 for t in data):
            self.fail("invalid")
        if holds_nul(data):
            self.fail("null_characters")
        return list(dict.fromkeys(data))

    def to_representation(self, value):
        return value
