"""The audit log: one function writes it, inside the caller's transaction."""

from .models import AuditEvent

Action = AuditEvent.Action


def record(action, target, *, user=None, details=None):
    actor = user if user is not None and getattr(user, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        action=action,
        target=str(target)[:300],
        actor=actor,
        actor_name=actor.get_username() if actor else "",
        details=details or {},
    )


def events(*, action="", actor="", target=""):
    found = AuditEvent.objects.all()
    if action:
        found = found.filter(action=action)
    if actor:
        found = found.filter(actor_name=actor)
    if target:
        found = found.filter(target__icontains=target)
    return found
