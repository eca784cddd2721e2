import csv
import io
import json

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer


class CSVRenderer(BaseRenderer):
    """A list of flat objects as CSV (``?format=csv``); nested values are written as JSON. No rows
    still give the header, from the view's ``csv_columns`` (an empty body would go out without a
    Content-Type)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "results" in data:
            data = data["results"]
        if isinstance(data, dict):  # an error: {"detail": ..., "errors": ...}
            data = [data]
        rows = list(data or [])
        view = (renderer_context or {}).get("view")
        columns = list(rows[0]) if rows else list(getattr(view, "csv_columns", []))
        out = io.StringIO()
        if columns:
            writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
        return out.getvalue().encode(self.charset)


class FirstRendererNegotiation(BaseContentNegotiation):
    """For views that answer files: whatever the client accepts, use the view's first renderer
    (the file itself is not rendered; errors still come as JSON)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
