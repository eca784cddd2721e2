"""Access is decided in one place (common.access.POLICY): every page and API view names the
object type and action it needs, and a URL that forgets to is caught here."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from common.access import POLICY, RolePermission
from monitoring.authentication import IsEndpointRuntime

# Views outside the policy, each for a reason: log-in/out, the load balancers' health check, the
# API schema and its docs (public descriptions of the API, no data), the admin site (Django's own
# staff checks), static files and the favicon (a redirect to a static file, asked for before log-in).
OPEN = {"login", "logout", "healthz", "schema", "api-docs", "favicon"}


def walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


ROUTES = list(walk(get_resolver().url_patterns))


def test_the_walk_finds_the_routes():
    assert len(ROUTES) > 60


@pytest.mark.parametrize("route,pattern", ROUTES, ids=[route for route, _ in ROUTES])
def test_every_view_declares_its_access(route, pattern):
    if pattern.name in OPEN or route.startswith("static/"):
        return
    view_class = getattr(pattern.callback, "view_class", None)
    if view_class is None:
        kind, action = pattern.callback.access  # set by access_required
        assert action in POLICY[kind]
        return
    permissions = view_class.permission_classes
    if IsEndpointRuntime in permissions:  # the serving runtime's endpoint token, checked per endpoint
        return
    assert RolePermission in permissions, f"{route} is not checked by common.access"
    assert view_class.access in POLICY, f"{route}: {view_class.__name__} names no object type in POLICY"
    for action in getattr(view_class, "access_actions", {}).values():
        assert action in POLICY[view_class.access], f"{route}: no {action!r} rule for {view_class.access!r}"


def test_a_view_without_a_rule_is_closed(admin_user):
    from types import SimpleNamespace

    from rest_framework.views import APIView

    class Forgotten(APIView):
        pass

    request = SimpleNamespace(method="GET", user=admin_user, auth=None)
    assert RolePermission().has_permission(request, Forgotten()) is False


def test_a_method_a_view_does_not_have_is_405_not_an_error(admin_user, viewer):
    from tests.conftest import api_client

    for user in (admin_user, viewer):
        assert api_client(user).patch("/api/v1/workers/", {}, format="json").status_code == 405
        assert api_client(user).delete("/api/v1/uploads/", format="json").status_code == 405
