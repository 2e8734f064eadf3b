"""The HTTP token API: obtain, refresh (rotating), verify, logout."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_out
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from .errors import APIError


class _Unauthenticated:
    """Token endpoints take credentials in the body: no session, so no CSRF check."""

    authentication_classes: list = []
    permission_classes: list = []


class TokenObtainView(_Unauthenticated, jwt_views.TokenObtainPairView):
    """`{username, password}` -> `{access, refresh}`."""


class TokenRefreshView(_Unauthenticated, jwt_views.TokenRefreshView):
    """`{refresh}` -> `{access, refresh}`; the old refresh token is blacklisted."""


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
    """Blacklist a refresh token (or all of the user's) and end the user's sockets.

    The socket side listens to Django's `user_logged_out` signal, sent here,
    so this app never imports the real-time engine.
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
        token.blacklist()
        if body.validated_data["all"]:
            for outstanding in OutstandingToken.objects.filter(user=request.user):
                BlacklistedToken.objects.get_or_create(token=outstanding)
        user_logged_out.send(sender=type(request.user), request=request._request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
