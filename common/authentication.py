"""API token authentication: ``Authorization: Token <key>`` (common.tokens checks the key).

Kept apart from common.tokens because DRF imports authentication classes while it loads
its settings, before its views module can be imported."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import TokenAuthentication


class ApiTokenAuthentication(TokenAuthentication):
    """request.user is the token's user, request.auth the token (an ApiToken)."""

    def authenticate_credentials(self, key):
        from .tokens import authenticate

        token = authenticate(key)
        return token.user, token


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "tokenAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`: an API token from your API tokens page or `/api/v1/tokens/`.",
        }
