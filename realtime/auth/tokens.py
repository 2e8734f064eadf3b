"""Access-token checks shared by the socket handshake, the `auth`/`refresh` frames and the HTTP API.

A pipeline of small steps, like simplejwt's `JWTAuthentication`, each one
replaceable on its own::

    raw --validate_access_token--> AccessToken --user_for_token--> user
          (signature, exp, type;                 (load_user: one query for the user and
           no database)                           its revocation state; check_user)

Sockets run it through `realtime.auth.cache.authenticate_token`: the user from a per-process cache.
simplejwt's errors are translated here, at the boundary::

    CredentialsError              base: these credentials authenticate nobody
    ├── InvalidCredentials        bad or revoked token, unknown or inactive user -> close 4501
    └── ExpiredCredentials        a genuine token past its `exp`                 -> close 4009

The token endpoints issue `PreciseRefreshToken` / `PreciseAccessToken`: simplejwt's,
plus an `iat_us` claim that settles a token issued in the same second as a
revocation (`realtime.models.CredentialState.revokes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from rest_framework_simplejwt import settings as jwt_settings  # the module: SIMPLE_JWT changes rebind api_settings
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token

from realtime.models import CredentialState, unix_microseconds

if TYPE_CHECKING:
    from datetime import datetime

    from django.contrib.auth.base_user import AbstractBaseUser

#: The issue time in microseconds since the epoch; `iat` has only seconds.
ISSUED_AT_US_CLAIM = "iat_us"


class CredentialsError(Exception):
    """The credentials given authenticate nobody; never raised itself."""


class InvalidCredentials(CredentialsError):
    """Not a valid access token of an active user, or a revoked one: do not retry with it."""


class ExpiredCredentials(CredentialsError):
    """A genuine access token past its `exp`: get a fresh one and retry."""


@dataclass(frozen=True)
class Authenticated:
    """Who a credential authenticated, and until when (Unix seconds; None for a session cookie)."""

    user: AbstractBaseUser
    expires_at: int | None
    issued_at: int | None = None
    checked_us: int = 0  # when the check began (Unix microseconds): a later revocation is not in it

    @classmethod
    def from_token(cls, user: AbstractBaseUser, token: Token) -> Authenticated:
        """The result for `user`, authenticated by the validated `token`."""
        return cls(user=user, expires_at=int(token["exp"]), issued_at=issued_at(token))


class _Precise:
    """Stamps a token with its issue time to the microsecond (`iat_us`) as well as `iat`."""

    def set_iat(self, claim: str = "iat", at_time: datetime | None = None) -> None:
        """Set `iat`, and `iat_us` from the same moment."""
        super().set_iat(claim, at_time)
        if claim == "iat":
            self.payload[ISSUED_AT_US_CLAIM] = unix_microseconds(at_time or self.current_time)


class PreciseAccessToken(_Precise, AccessToken):
    """simplejwt's access token, also stamped with its issue time to the microsecond (`iat_us`)."""


class PreciseRefreshToken(_Precise, RefreshToken):
    """simplejwt's refresh token, stamped likewise (also when rotated), issuing `PreciseAccessToken`s."""

    access_token_class = PreciseAccessToken
    # The refresh token's own stamp must never overwrite the access token's.
    no_copy_claims = (*RefreshToken.no_copy_claims, ISSUED_AT_US_CLAIM)


def validate_access_token(raw: str) -> AccessToken:
    """Decode and verify `raw` as an access token (signature, `exp`, type), without the database."""
    try:
        return AccessToken(raw)
    except ExpiredTokenError as exc:
        raise ExpiredCredentials("The token has expired.") from exc
    except TokenError as exc:
        raise InvalidCredentials(f"Invalid token: {exc}") from exc


def user_for_token(token: Token) -> AbstractBaseUser:
    """The active, unrevoked user `token` names (sync: one query); InvalidCredentials otherwise."""
    user = load_user(user_id_of(token))
    check_user(user, token)
    return user


def user_id_of(token: Token) -> Any:
    """The user id claim of `token`."""
    try:
        return token[jwt_settings.api_settings.USER_ID_CLAIM]
    except KeyError as exc:
        raise InvalidCredentials("The token names no user.") from exc


def load_user(user_id: Any) -> AbstractBaseUser:
    """The user with `user_id`, its revocation state joined in, in one query."""
    user_model = get_user_model()
    try:
        return user_model._default_manager.select_related("realtime_credentials").get(
            **{jwt_settings.api_settings.USER_ID_FIELD: user_id}
        )
    # ValueError, TypeError, ValidationError: an id the primary key cannot take (say, "x" for an integer).
    except (user_model.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise InvalidCredentials("The token's user does not exist.") from exc


def check_user(user: AbstractBaseUser, token: Token) -> None:
    """Raise InvalidCredentials if `user` is inactive or revoked its credentials after `token` was issued."""
    if not user.is_active:
        raise InvalidCredentials("The token's user is inactive.")
    # select_related cached the state (None when the user was never revoked): no query here.
    state = getattr(user, "realtime_credentials", None)
    if state is not None and state.revokes(issued_at(token), issued_at_us(token)):
        raise InvalidCredentials("The token was revoked.")


def check_refresh_token(token: Token) -> None:
    """Raise InvalidCredentials if the refresh token's user revoked their sessions after it was issued.

    One query (the user's revocation state); a token of a user without one passes here
    (simplejwt checks the user itself when it rotates).
    """
    field = jwt_settings.api_settings.USER_ID_FIELD  # the pk (one table), or another unique field (a join)
    lookup = "user_id" if field == get_user_model()._meta.pk.name else f"user__{field}"
    state = CredentialState.objects.filter(**{lookup: user_id_of(token)}).first()
    if state is not None and state.revokes_refresh(issued_at(token), issued_at_us(token)):
        raise InvalidCredentials("The refresh token was revoked.")


def issued_at(token: Token) -> int | None:
    """The token's `iat` in whole Unix seconds, or None without one."""
    # PyJWT already checked that a present `iat` is an integer (or a numeric string).
    value = token.get("iat")
    return None if value is None else int(value)


def issued_at_us(token: Token) -> int | None:
    """The token's `iat_us` (microseconds), or None without a well-formed one."""
    value = token.get(ISSUED_AT_US_CLAIM)
    # bool is an int too; anything else malformed counts as absent (the stricter reading).
    return value if isinstance(value, int) and not isinstance(value, bool) else None
