"""What the registry's services share."""

from django.core.exceptions import ValidationError

from common.errors import BerthError


def full_clean(instance, **kwargs):
    """full_clean() with the first problem raised as a BerthError naming its field."""
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False, **kwargs)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise BerthError(" ".join(messages), field=None if field == "__all__" else field) from exc
