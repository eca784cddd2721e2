"""Who may do what. Roles are Django groups: viewer (read), engineer (upload, register, run
jobs, move aliases), admin (everything, including hardware targets). Superusers are admins.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEWER = "viewer"
ENGINEER = "engineer"
ADMIN = "admin"
ROLES = (VIEWER, ENGINEER, ADMIN)
_RANK = {None: 0, VIEWER: 1, ENGINEER: 2, ADMIN: 3}


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


def can_read(user):
    return has_role(user, VIEWER)


def can_write(user):
    return has_role(user, ENGINEER)


def is_admin(user):
    return has_role(user, ADMIN)


class RolePermission(BasePermission):
    """Reads need the viewer role, writes the engineer role; a view may raise the bar with
    ``write_role = ADMIN``."""

    message = "Your role does not allow this. Viewers can read; engineers can upload, register and run jobs."

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS:
            return can_read(request.user)
        return has_role(request.user, getattr(view, "write_role", ENGINEER))


def role_required(role=VIEWER):
    """Page views: anonymous users go to the login page; a weaker role gets 403."""
    from functools import wraps

    from django.contrib.auth.views import redirect_to_login
    from django.core.exceptions import PermissionDenied

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
