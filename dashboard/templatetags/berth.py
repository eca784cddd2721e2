from django import template

from berth.core.drift import drift_text
from monitoring.notify import value_text

register = template.Library()


@register.filter
def shape(dims):
    """A tensor shape for people: ["batch", 64] → "batch × 64"; unknown dims as "?"."""
    if dims is None:
        return "unknown"
    return " × ".join("?" if d is None else str(d) for d in dims) or "scalar"


@register.filter
def points(delta):
    """An accuracy delta (a fraction) in percentage points: 0.0012 → "+0.12 pt"."""
    if delta is None:
        return "—"
    return f"{delta * 100:+.2f} pt"


@register.filter
def ms(value):
    """Milliseconds with sensible precision."""
    from jobs.engine.decision import format_ms

    return "—" if value is None else format_ms(value)


@register.filter
def percent(value):
    """A fraction as a percentage: 0.9861 → "98.61 %"."""
    if value is None:
        return "—"
    return f"{value * 100:.2f} %"


@register.filter
def pretty_json(value):
    """JSON for people: indented, keys in order, null/true/false spelled as in the API."""
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)


@register.filter
def tail_lines(text, count):
    """The last ``count`` lines of a log, with a note of how many came before."""
    lines = (text or "").rstrip("\n").split("\n")
    count = int(count)
    if len(lines) <= count:
        return "\n".join(lines)
    return f"… {len(lines) - count} earlier lines …\n" + "\n".join(lines[-count:])


@register.filter
def pt(fraction):
    """A fraction in percentage points, as given: 0.005 → "0.5 pt"."""
    return f"{fraction * 100:g} pt"


@register.filter
def quality_summary(result):
    """A benchmark result's quality metrics for people: [(label, "97.80 % ±1.52 pt"), ...]."""
    from jobs.engine.quality import read_quality, summary

    return summary(read_quality(result.quality, accuracy=result.accuracy, fidelity=result.fidelity))


@register.filter
def describe_reference(reference, measure):
    """A decision's reference for people: "reference 1 (the most accurate ...)"."""
    return reference.describe(measure)


@register.filter
def limit_id(param):
    """The page's id of a limit input: max_drop_pt → max-drop (ids tests and scripts rely on)."""
    return {"max_drop_pt": "max-drop", "max_relative_error_pct": "max-relative-error", "min_cosine": "min-cosine"}.get(
        param, param
    )


@register.filter
def split(text, separator=" "):
    return text.split(separator)


@register.filter
def seconds(value):
    """A step in seconds as people say it: 1 min, 15 min, 1 h, 6 h, 1 d."""
    value = int(value or 0)
    if value % 86400 == 0 and value:
        return f"{value // 86400} d"
    if value % 3600 == 0 and value:
        return f"{value // 3600} h"
    if value % 60 == 0:
        return f"{value // 60} min"
    return f"{value} s"


@register.filter
def sparkline(values, width=120):
    """A tiny inline SVG line of a series (None values leave gaps), with its last value."""
    from django.utils.html import format_html

    points = [(i, v) for i, v in enumerate(values or []) if v is not None]
    if not points:
        return format_html('<span class="muted">{}</span>', "no data")
    height, count = 24, max(len(values) - 1, 1)
    top = max(v for _, v in points) or 1.0
    coordinates = " ".join(f"{i * width / count:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in points)
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img">'
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>',
        width,
        height,
        width,
        height,
        coordinates,
    )


@register.filter
def last_value(values):
    """The latest non-empty value of a series."""
    return next((v for v in reversed(values or []) if v is not None), None)


@register.filter
def clock(value):
    """A duration in seconds as a countdown: 9:05, or 1:02:03 past an hour."""
    value = max(0, int(value or 0))
    hours, rest = divmod(value, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def ago(value):
    """Seconds since something, as people say it: 4 s ago, 3 min ago, 2 h ago."""
    value = max(0, int(value or 0))
    if value < 120:
        return f"{value} s ago"
    if value < 7200:
        return f"{value // 60} min ago"
    return f"{value // 3600} h ago"


def format_latency(value_ms):
    """A latency for people, with its unit: microseconds below 1 ms (0.008 → "8.0 µs"), else ms
    ("1.234 ms", "12.35 ms", "120.5 ms")."""
    if value_ms is None:
        return "—"
    if value_ms < 1:
        micros = value_ms * 1000
        return f"{micros:.1f} µs" if micros < 100 else f"{micros:.0f} µs"
    return f"{value_ms:.3f} ms" if value_ms < 10 else f"{value_ms:.2f} ms" if value_ms < 100 else f"{value_ms:.1f} ms"


@register.filter
def latency(value_ms):
    return format_latency(value_ms)


@register.filter
def any_active(jobs):
    """Whether any of these jobs is still queued or running (its table then refreshes itself)."""
    return any(not job.is_finished for job in jobs)


@register.filter
def scalar_items(mapping):
    """The (key, value) pairs of a dict whose values are plain scalars, for a facts table."""
    return [
        (key, value)
        for key, value in sorted((mapping or {}).items())
        if isinstance(value, (str, int, float, bool)) or value is None
    ]


@register.filter
def drift_figures(verdict, feature=None):
    """A drift verdict's test and effect against their thresholds (berth.core.drift.drift_text)."""
    return drift_text(verdict, feature)


@register.filter
def worst_drift(verdicts):
    """The figures of the feature furthest past its thresholds among ``{feature: verdict or
    None}`` (series.recent's drift), or "" when none has a verdict."""
    scored = [(verdict["relative"], name, verdict) for name, verdict in (verdicts or {}).items() if verdict]
    if not scored:
        return ""
    _, name, verdict = max(scored, key=lambda item: item[0])
    return drift_text(verdict, name)


@register.filter
def alert_value(alert):
    """A firing alert's latest figure against its threshold, in its metric's terms."""
    return value_text(alert)
