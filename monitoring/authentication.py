"""Serving runtimes authenticate with their endpoint's token: ``Authorization: Bearer <token>``."""

import hashlib

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, NotFound, PermissionDenied
from rest_framework.permissions import BasePermission

from .models import Endpoint


class EndpointTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Send the endpoint token as 'Authorization: Bearer <token>'.")
        digest = hashlib.sha256(parts[1]).hexdigest()
        endpoint = Endpoint.objects.select_related("model", "target").filter(token_hash=digest).first()
        if endpoint is None:
            raise AuthenticationFailed("This endpoint token is not valid (it may have been regenerated).")
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
        return {"type": "http", "scheme": "bearer",
                "description": "An endpoint's token (shown when the endpoint is created or its token regenerated)."}
