"""Who may do what: the one place access is decided.

Roles are Django groups: viewer (read), engineer (upload, register, run jobs, move aliases,
deploy), admin (everything: hardware targets, gate overrides, others' uploads and tokens, the
audit log). Superusers are admins. ``POLICY`` gives, per object type and action, the weakest
role allowed. An API token acts with its user's role, narrowed by its scope.

Every page view is wrapped in ``access_required(kind, action)`` and every API view names its
``access`` kind (RolePermission maps safe methods to "read", others to "write" unless
``access_actions`` says otherwise); tests/test_access.py checks that no URL is left out.
"""

from functools import wraps

from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEWER = "viewer"
ENGINEER = "engineer"
ADMIN = "admin"
ROLES = (VIEWER, ENGINEER, ADMIN)
_RANK = {None: 0, VIEWER: 1, ENGINEER: 2, ADMIN: 3}

READ, WRITE, REGISTER, OTHERS, OVERRIDE = "read", "write", "register", "others", "override"

POLICY = {
    "model": {READ: VIEWER, WRITE: ENGINEER, REGISTER: ENGINEER},
    "version": {READ: VIEWER, WRITE: ENGINEER, REGISTER: ENGINEER},
    # Uploads are private to their uploader; OTHERS is who may see and finish anyone's.
    "upload": {READ: ENGINEER, REGISTER: ENGINEER, OTHERS: ADMIN},
    "alias": {READ: VIEWER, WRITE: ENGINEER, OVERRIDE: ADMIN},
    "gate": {READ: VIEWER, WRITE: ENGINEER},
    "target": {READ: VIEWER, WRITE: ADMIN},
    "job": {READ: VIEWER, WRITE: ENGINEER},
    "worker": {READ: VIEWER},
    "endpoint": {READ: VIEWER, WRITE: ENGINEER},
    # Webhook URLs carry secrets: WRITE also decides who sees them whole.
    "alert": {READ: VIEWER, WRITE: ENGINEER},
    "audit": {READ: ADMIN},
    # Everyone manages their own API tokens; OTHERS is who may list and revoke anyone's.
    "token": {READ: VIEWER, WRITE: VIEWER, OTHERS: ADMIN},
}

# What a token of each scope may do beyond reading (None: whatever the role allows).
SCOPES = {"full": None, "register": {REGISTER}, "read": set()}
SCOPE_HELP = {
    "register": "This token's scope is 'register': it may read, upload and register versions, nothing else.",
    "read": "This token's scope is 'read': it may only read.",
}


def user_role(user):
    """The strongest role of an active user, or None (anonymous, inactive, no group)."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    cached = getattr(user, "_berth_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = next((r for r in (ADMIN, ENGINEER, VIEWER) if r in names), None)
    user._berth_role = role
    return role


def has_role(user, role):
    return _RANK[user_role(user)] >= _RANK[role]


def required_role(kind, action):
    try:
        return POLICY[kind][action]
    except KeyError:
        raise LookupError(f"common.access.POLICY has no rule for {action!r} on {kind!r}") from None


def permits(user, kind, action, *, token=None):
    """May ``user`` (through ``token``, if any) do ``action`` on objects of ``kind``?"""
    return has_role(user, required_role(kind, action)) and scope_permits(token, action)


def scope_permits(token, action):
    allowed = SCOPES.get(getattr(token, "scope", "full"), set())
    return action == READ or allowed is None or action in allowed


def denial(user, kind, action, *, token=None):
    """Why ``permits`` said no, in words a user can act on."""
    if not scope_permits(token, action):
        return SCOPE_HELP.get(token.scope, "This token's scope does not allow this.")
    role = required_role(kind, action)
    return f"This needs the {role} role; yours is {user_role(user) or 'none'}."


def can_write(user):
    return has_role(user, ENGINEER)


def is_admin(user):
    return has_role(user, ADMIN)


def request_token(request):
    """The API token a request came with (its ``scope`` narrows the role), or None."""
    return request.auth if hasattr(request.auth, "scope") else None


class RolePermission(BasePermission):
    """API views name their object type in ``access``; safe methods need its "read" rule, others
    its "write" rule, unless ``access_actions`` maps the method to another action."""

    message = "Your role does not allow this."

    def has_permission(self, request, view):
        kind = getattr(view, "access", None)
        if kind is None:
            self.message = "This API view declares no access rule, so it is closed."
            return False
        if request.method.lower() not in getattr(view, "http_method_names", ()) or not hasattr(
            view, request.method.lower()
        ):
            return True  # the view answers 405 Method Not Allowed
        actions = getattr(view, "access_actions", {})
        action = actions.get(request.method, READ if request.method in SAFE_METHODS else WRITE)
        token = request_token(request)
        if permits(request.user, kind, action, token=token):
            return True
        if request.user and request.user.is_authenticated:
            self.message = denial(request.user, kind, action, token=token)
        return False


def access_required(kind, action=READ):
    """Page views: anonymous users go to the login page; a weaker role gets 403."""
    required_role(kind, action)

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            from django.contrib.auth.views import redirect_to_login
            from django.core.exceptions import PermissionDenied

            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not permits(request.user, kind, action):
                raise PermissionDenied(denial(request.user, kind, action))
            return view(request, *args, **kwargs)

        wrapper.access = (kind, action)
        return wrapper

    return decorator
