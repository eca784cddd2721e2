"""Checking a job's ``params`` before it is queued: each problem is a 400 naming the field
(``params.batch_sizes``) and saying what is allowed."""

from common.errors import BerthError


def fail(key, message):
    raise BerthError(message, field=f"params.{key}")


def only_known(params, allowed, what):
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        fail(
            unknown[0], f"Unknown parameter {unknown[0]!r} for {what}. Allowed: {', '.join(sorted(allowed)) or 'none'}."
        )


def boolean(params, key, default):
    value = params.get(key, default)
    if not isinstance(value, bool):
        fail(key, f"{key} must be true or false.")
    return value


def integer(params, key, default, *, low, high):
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(key, f"{key} must be a whole number from {low} to {high}, not {value!r}.")
    return value


def number(params, key, default, *, low, high):
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        fail(key, f"{key} must be a number from {low} to {high}, not {value!r}.")
    return float(value)


def choice(params, key, default, allowed):
    value = params.get(key, default)
    if value not in allowed:
        fail(key, f"{key} must be one of {', '.join(map(str, allowed))}, not {value!r}.")
    return value


def int_list(params, key, default, *, low, high, most, allow_none=False):
    value = params.get(key, default)
    if isinstance(value, (int, type(None))) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        fail(key, f"{key} must be a list of 1 to {most} values.")
    for item in value:
        if item is None and allow_none:
            continue
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
            fail(
                key,
                f"Every {key} entry must be a whole number from {low} to {high}"
                f"{' (or null for the default)' if allow_none else ''}, not {item!r}.",
            )
    return list(dict.fromkeys(value))


def string_list(params, key, default, allowed=None):
    value = params.get(key, default)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        fail(key, f"{key} must be a non-empty list of names, or null.")
    if allowed is not None and not set(value) <= set(allowed):
        fail(key, f"{key} may contain only {', '.join(allowed)}.")
    return value


def version_name(params, key="output_version"):
    """An optional name for the version a job creates."""
    from registry.models import version_validator
    from django.core.exceptions import ValidationError

    value = params.get(key)
    if value is None:
        return None
    try:
        version_validator(value)
    except (ValidationError, TypeError):
        fail(key, f"{key} must be 1-128 characters of letters, digits, '.', '_', '+', '-'.")
    return value


def dataset(params, key, *, model, kind, required, why=""):
    """The named dataset of ``model`` (or the newest of that kind); its name, or None."""
    from registry.models import Dataset

    name = params.get(key)
    datasets = Dataset.objects.filter(model=model)
    if name is not None:
        found = datasets.filter(name=name).first()
        if found is None:
            fail(key, f"Model {model.name} has no dataset named {name!r}.")
        return found.name
    found = datasets.filter(kind=kind).order_by("-created").first()
    if found is None and required:
        fail(
            key,
            f"{why} Model {model.name} has no {kind} dataset: attach one "
            f"(POST /api/v1/models/{model.name}/versions/<version>/datasets/ with kind={kind}).",
        )
    return found.name if found else None


def dataset_fits(key, name, *, model, version, needs_labels=False):
    """The dataset holds every input of ``version`` with its rank and fixed sizes (and labels)."""
    from registry.models import Dataset

    dataset = Dataset.objects.get(model=model, name=name)
    for spec in version.io_signature.get("inputs", []):
        found = dataset.arrays.get(spec["name"])
        if found is None:
            fail(
                key,
                f"Dataset {name} has no array {spec['name']!r}, an input of {version.ref}; it has "
                f"{', '.join(sorted(dataset.arrays))}.",
            )
        want, have = spec.get("shape") or [], found.get("shape") or []
        fixed = all(not isinstance(w, int) or w == h for w, h in zip(want[1:], have[1:]))
        if len(want) != len(have) or not fixed:
            shown = ["batch" if not isinstance(w, int) else w for w in want]
            fail(key, f"Dataset {name}'s {spec['name']!r} has shape {have}, but {version.ref} takes {shown}.")
    if needs_labels and "labels" not in dataset.arrays:
        fail(key, f"Dataset {name} has no 'labels' array, and this method trains on labels.")
