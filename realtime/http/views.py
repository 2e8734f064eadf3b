"""The base of the app's DRF views: they configure themselves, whatever the project's REST_FRAMEWORK says.

A project that installs the app may have no REST_FRAMEWORK setting, or one made for its own
API (other default authentication, permissions, renderers, exception handler): the app's views
name theirs here, so they answer the same everywhere (PROTOCOL section 9: bearer tokens or the
session cookie with CSRF, JSON errors `{"code", "message"}`).
"""

from __future__ import annotations

from collections.abc import Callable

from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from realtime.auth.drf import JWTAuthentication
from realtime.http.errors import exception_handler


class AppView(APIView):
    """An API view of the app: bearer token or session cookie, authenticated, JSON, the app's errors."""

    authentication_classes = [JWTAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]

    def get_exception_handler(self) -> Callable:
        return exception_handler
