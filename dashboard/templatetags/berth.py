from django import template

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
    from jobs.comparison import format_ms

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
def split(text, separator=" "):
    return text.split(separator)
