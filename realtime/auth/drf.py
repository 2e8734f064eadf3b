"""HTTP authentication of the API: simplejwt's, with the socket's user checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from realtime.auth.tokens import CredentialsError, user_for_token

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


class JWTAuthentication(authentication.JWTAuthentication):
    """`Authorization: Bearer <access>`, also rejecting tokens issued before a revocation.

    The user is found by `realtime.auth.tokens.user_for_token`, the step the socket uses,
    so HTTP and WebSocket accept exactly the same tokens (in one query).
    """

    def get_user(self, validated_token: Token) -> AbstractBaseUser:
        """The active, unrevoked user the token names; 401 otherwise."""
        try:
            return user_for_token(validated_token)
        except CredentialsError as exc:
            raise InvalidToken(str(exc)) from exc
