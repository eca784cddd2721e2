"""Field types shared by the apps' serializers."""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

METADATA_MAX_CHARS = 64 * 1024


@extend_schema_field(OpenApiTypes.OBJECT)
class JSONObjectField(serializers.Field):
    """A JSON object, given as an object (JSON bodies) or as a JSON string (multipart forms)."""

    default_error_messages = {
        "invalid": "Must be a JSON object, e.g. {{\"commit\": \"abc123\"}}.",
        "too_long": f"Must be at most {METADATA_MAX_CHARS:,} characters of JSON.",
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
        return data

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class TagsField(serializers.Field):
    """A list of short strings; multipart forms may send "a,b,c" or the field repeated."""

    default_error_messages = {"invalid": "Tags are a list of strings of at most 50 characters (at most 20 tags)."}

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
        return list(dict.fromkeys(data))

    def to_representation(self, value):
        return value
