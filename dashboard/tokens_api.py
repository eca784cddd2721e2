"""API tokens over the REST API: list, create (the key is in the answer, once) and revoke.
Everyone manages their own; admins may list and revoke anyone's and issue tokens for others
(a CI service account, say)."""

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from common import tokens
from common.access import OTHERS, permits, request_token
from common.api import ERRORS, validated
from common.errors import BerthError, NotFound
from common.models import ApiToken


class ApiTokenSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "user", "name", "prefix", "scope", "created", "expires", "last_used", "revoked", "active"]

    def get_active(self, token) -> bool:
        return tokens.is_active(token)


class NewApiTokenSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once: Berth keeps only its sha256")

    class Meta(ApiTokenSerializer.Meta):
        fields = ApiTokenSerializer.Meta.fields + ["key"]


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What uses it, e.g. 'CI: digits repo'")
    scope = serializers.ChoiceField(choices=ApiToken.Scope.choices, default=ApiToken.Scope.FULL)
    expires_days = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=tokens.MAX_EXPIRY_DAYS, help_text="Empty: never expires"
    )
    user = serializers.CharField(required=False, help_text="Admins only: issue the token for this user")


def _see_all(request):
    return permits(request.user, "token", OTHERS, token=request_token(request))


class ApiTokenListApi(GenericAPIView):
    access = "token"
    serializer_class = ApiTokenSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("all", bool, description="Admins: every user's tokens"),
            OpenApiParameter("active", bool, description="Only tokens that still work"),
        ],
        responses={200: ApiTokenSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        found = tokens.tokens_for(
            request.user, all_users=request.query_params.get("all") == "true" and _see_all(request)
        )
        if request.query_params.get("active") == "true":
            found = tokens.active(found)
        page = self.paginate_queryset(found)
        return self.get_paginated_response(ApiTokenSerializer(page, many=True).data)

    @extend_schema(
        request=ApiTokenCreateSerializer,
        responses={201: NewApiTokenSerializer, **ERRORS},
        description="A new token. Its key is in this answer only.",
    )
    def post(self, request):
        data = validated(ApiTokenCreateSerializer, request.data)
        owner = request.user
        if data.get("user") and data["user"] != request.user.get_username():
            if not _see_all(request):
                raise BerthError(
                    "Only admins may issue tokens for other users.", field="user", status=status.HTTP_403_FORBIDDEN
                )
            owner = User.objects.filter(username=data["user"]).first()
            if owner is None:
                raise NotFound(f"There is no user {data['user']!r}.", field="user")
        token, key = tokens.issue(
            owner, name=data["name"], scope=data["scope"], expires_days=data.get("expires_days"), actor=request.user
        )
        token.key = key
        return Response(NewApiTokenSerializer(token).data, status=status.HTTP_201_CREATED)


class ApiTokenDetailApi(APIView):
    access = "token"

    @extend_schema(responses={200: ApiTokenSerializer, **ERRORS})
    def get(self, request, token_id):
        return Response(
            ApiTokenSerializer(tokens.token_get(token_id, user=request.user, all_users=_see_all(request))).data
        )

    @extend_schema(
        request=None,
        responses={200: OpenApiResponse(ApiTokenSerializer, description="Revoked"), **ERRORS},
        description="Revoke the token: it stops working at once. Revoking twice is harmless.",
    )
    def delete(self, request, token_id):
        token = tokens.token_get(token_id, user=request.user, all_users=_see_all(request))
        return Response(ApiTokenSerializer(tokens.revoke(token, actor=request.user)).data)
