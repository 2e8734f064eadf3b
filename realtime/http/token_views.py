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
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from realtime.auth.revocation import revoke_credentials
from realtime.auth.tokens import (
    CredentialsError,
    InvalidCredentials,
    PreciseRefreshToken,
    check_refresh_token,
    user_for_token,
    validate_access_token,
)
from realtime.http import throttling
from realtime.http.errors import APIError
from realtime.http.views import AppView


class _Unauthenticated:
    """Token endpoints take credentials in the body: no session, so no CSRF check; JSON and the app's errors."""

    authentication_classes: list = []
    permission_classes: list = []
    renderer_classes = AppView.renderer_classes
    get_exception_handler = AppView.get_exception_handler


class TokenObtainSerializer(jwt_serializers.TokenObtainPairSerializer):
    """simplejwt's, issuing access tokens stamped to the microsecond (`realtime.auth.tokens.PreciseAccessToken`)."""

    token_class = PreciseRefreshToken


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """simplejwt's, issuing access tokens stamped to the microsecond; a deleted user's token is a 401."""

    token_class = PreciseRefreshToken

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        """Rotate the refresh token; a revoked one (password changed, deactivated, logout with `all`)
        is a 401, and one of a deleted user is refused like an inactive user's."""
        try:
            check_refresh_token(self.token_class(attrs["refresh"]))
        except TokenError as exc:
            raise InvalidToken(str(exc)) from exc
        except InvalidCredentials as exc:
            raise InvalidToken(str(exc)) from exc
        try:
            return super().validate(attrs)
        except get_user_model().DoesNotExist as exc:
            # simplejwt 5.5.1 looks the user up with .get() and lets this escape as a 500.
            raise exceptions.AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            ) from exc


class TokenObtainView(_Unauthenticated, jwt_views.TokenObtainPairView):
    """`{username, password}` -> `{access, refresh}`; throttled (`realtime.http.throttling`).

    `username` is the user model's `USERNAME_FIELD` (`email`, say), as simplejwt names the field.
    """

    serializer_class = TokenObtainSerializer

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # The field the serializer reads: counted under the name the failed login is recorded by.
        field = self.serializer_class.username_field
        username = request.data.get(field) if isinstance(request.data, dict) else None
        username = username if isinstance(username, str) else ""
        with throttling.login_attempt(request, username):  # a wrong password counts (throttling.count_failure)
            return super().post(request, *args, **kwargs)


class TokenRefreshView(_Unauthenticated, jwt_views.TokenRefreshView):
    """`{refresh}` -> `{access, refresh}`; the old refresh token is blacklisted."""

    serializer_class = TokenRefreshSerializer


class TokenVerifySerializer(serializers.Serializer):
    """`{token}`: valid when the socket would accept it (an access token of an active, unrevoked user)."""

    token = serializers.CharField(write_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            user_for_token(validate_access_token(attrs["token"]))
        except CredentialsError as exc:
            raise InvalidToken(str(exc)) from exc
        return {}


class TokenVerifyView(_Unauthenticated, jwt_views.TokenViewBase):
    """`{token}` -> 200 `{}` when the token is one the socket and the API accept, 401 otherwise.

    The same pipeline as the socket (`realtime.auth.tokens`): signature, expiry, an *access*
    token (a refresh token is not), an existing active user, not revoked since.
    """

    serializer_class = TokenVerifySerializer


class LogoutSerializer(serializers.Serializer):
    """The body of a logout: the refresh token to end, or all of the user's."""

    refresh = serializers.CharField()
    all = serializers.BooleanField(default=False)


class ForeignToken(APIError):
    """The refresh token given belongs to another user."""

    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "This refresh token belongs to another user."
    default_code = "permission_denied"


class LogoutView(AppView):
    """Blacklist a refresh token (or all of the user's), revoke the user's access tokens, end their sockets.

    Revoking sends `realtime.signals.credentials_revoked` (reason "logout") once the
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
        # The claim holds USER_ID_FIELD (not necessarily the primary key), as simplejwt wrote it: str() for a UUID.
        if str(token.get(jwt_settings.USER_ID_CLAIM)) != str(getattr(request.user, jwt_settings.USER_ID_FIELD)):
            raise ForeignToken()
        # One transaction: the signal goes out only once every write has committed.
        with transaction.atomic():
            token.blacklist()
            if body.validated_data["all"]:
                for outstanding in OutstandingToken.objects.filter(user=request.user):
                    BlacklistedToken.objects.get_or_create(token=outstanding)
            # `all` ends every session, so the refresh tokens too; one device's logout only its own.
            revoke_credentials(request.user, "logout", refresh=body.validated_data["all"])
        user_logged_out.send(sender=type(request.user), request=request._request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
