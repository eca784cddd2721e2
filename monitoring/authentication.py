"""Serving runtimes authenticate with their endpoint's token: ``Authorization: Bearer <token>``
(the current token, or the previous one within its grace period after a rotation)."""

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, NotFound, PermissionDenied
from rest_framework.permissions import BasePermission

from . import replicas
from .models import Endpoint


class EndpointTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Send the endpoint token as 'Authorization: Bearer <token>'.")
        try:
            endpoint, which = replicas.runtime_authenticate(
                token=parts[1], instance=request.headers.get(replicas.INSTANCE_HEADER, "")
            )
        except replicas.TokenRefused as exc:
            raise AuthenticationFailed(str(exc)) from None
        # Which token it was (and its prefix), for the replica list: see monitoring.replicas.
        endpoint.runtime_token = which
        endpoint.runtime_token_prefix = parts[1][:8].decode("latin-1")
        return AnonymousUser(), endpoint

    def authenticate_header(self, request):
        return "Bearer"


class IsEndpointRuntime(BasePermission):
    """The request carries an endpoint token, and (where the URL names an endpoint) its own."""

    def has_permission(self, request, view):
        endpoint = request.auth
        if not isinstance(endpoint, Endpoint):
            return False
        name = view.kwargs.get("name")
        if name is not None and name != endpoint.name:
            if not Endpoint.objects.filter(name=name).exists():
                raise NotFound(f"There is no endpoint named {name!r}.")
            raise PermissionDenied(f"This token belongs to endpoint {endpoint.name}, not {name}.")
        return True


class EndpointTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the endpoint token."""

    target_class = EndpointTokenAuthentication
    name = "endpointToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An endpoint's token (shown when the endpoint is created or its token regenerated).",
        }
