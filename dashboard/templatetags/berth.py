from django import template

register = template.Library()


@register.filter
def shape(dims):
    """A tensor shape for people: ["batch", 64] → "batch × 64"; unknown dims as "?"."""
    if dims is None:
        return "unknown"
    return " × ".join("?" if d is None else str(d) for d in dims) or "scalar"
