"""The HTTP token API: obtain, refresh (rotating), verify, logout."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from .errors import APIError
from .models import revoke_credentials
from .tokens import PreciseRefreshToken


class _Unauthenticated:
    """Token endpoints take credentials in the body: no session, so no CSRF check."""

    authentication_classes: list = []
    permission_classes: list = []


class TokenObtainSerializer(jwt_serializers.TokenObtainPairSerializer):
    """simplejwt's, issuing access tokens stamped to the microsecond (`accounts.tokens.PreciseAccessToken`)."""

    token_class = PreciseRefreshToken


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """simplejwt's, issuing access tokens stamped to the microsecond; a deleted user's token is a 401."""

    token_class = PreciseRefreshToken

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        """Rotate the refresh token; one of a deleted user is refused like an inactive user's."""
        try:
            return super().validate(attrs)
        except get_user_model().DoesNotExist as exc:
            # simplejwt 5.5.1 looks the user up with .get() and lets this escape as a 500.
            raise exceptions.AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            ) from exc


class TokenObtainView(_Unauthenticated, jwt_views.TokenObtainPairView):
    """`{username, password}` -> `{access, refresh}`."""

    serializer_class = TokenObtainSerializer


class TokenRefreshView(_Unauthenticated, jwt_views.TokenRefreshView):
    """`{refresh}` -> `{access, refresh}`; the old refresh token is blacklisted."""

    serializer_class = TokenRefreshSerializer


class TokenVerifyView(_Unauthenticated, jwt_views.TokenVerifyView):
    """`{token}` -> 200 `{}` when valid, 401 otherwise."""


class LogoutSerializer(serializers.Serializer):
    """The body of a logout: the refresh token to end, or all of the user's."""

    refresh = serializers.CharField()
    all = serializers.BooleanField(default=False)


class ForeignToken(APIError):
    """The refresh token given belongs to another user."""

    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "This refresh token belongs to another user."
    default_code = "permission_denied"


class LogoutView(APIView):
    """Blacklist a refresh token (or all of the user's), revoke the user's access tokens, end their sockets.

    Revoking sends `accounts.signals.credentials_revoked` (reason "logout") once the
    transaction commits; the real-time engine listens and closes the user's sockets,
    so this app never imports it. Django's `user_logged_out` is sent as well.
    """

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        body = LogoutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            token = RefreshToken(body.validated_data["refresh"])
        except TokenError as exc:
            raise InvalidToken(str(exc)) from exc
        if str(token.get(jwt_settings.USER_ID_CLAIM)) != str(request.user.pk):
            raise ForeignToken()
        # One transaction: the signal goes out only once every write has committed.
        with transaction.atomic():
            token.blacklist()
            if body.validated_data["all"]:
                for outstanding in OutstandingToken.objects.filter(user=request.user):
                    BlacklistedToken.objects.get_or_create(token=outstanding)
            revoke_credentials(request.user, "logout")
        user_logged_out.send(sender=type(request.user), request=request._request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
