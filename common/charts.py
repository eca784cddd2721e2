"""The look every Plotly figure of the site shares (the comparison page's and the endpoint
page's): layout, axes, colours, and the JSON a page embeds. Figures are plain dicts that
static/js/charts.js draws."""

import json

from django.core.serializers.json import DjangoJSONEncoder

AXIS = {"gridcolor": "#e5e7eb", "zerolinecolor": "#d1d5db", "automargin": True}
LAYOUT = {
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "font": {"family": "system-ui, sans-serif", "size": 12},
    "margin": {"l": 60, "r": 20, "t": 70, "b": 50},
    "height": 420,
    "legend": {"orientation": "h", "y": -0.2},
}
RED = "#d62728"


def layout(title, subtitle=None, x_title=None, y_title=None, **extra):
    """A figure layout with the site's look, a title (and subtitle) and axis titles."""
    x_axis = {**AXIS, **extra.pop("xaxis", {})}
    y_axis = {**AXIS, **extra.pop("yaxis", {})}
    if x_title:
        x_axis["title"] = {"text": x_title}
    if y_title:
        y_axis["title"] = {"text": y_title}
    heading = {"text": title, **({"subtitle": {"text": subtitle}} if subtitle else {})}
    return {**LAYOUT, "title": heading, "xaxis": x_axis, "yaxis": y_axis, **extra}


def to_json(figure):
    """The figure as JSON that is safe inside a <script type="application/json"> block."""
    text = json.dumps(figure, cls=DjangoJSONEncoder)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
