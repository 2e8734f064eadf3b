"""Credential revocation, recorded in the database.

JWT access tokens are stateless: blacklisting the refresh token at logout does not
stop an access token already handed out, which could reconnect a socket until it
expires. So each revocation (logout, deactivation, a password change) stores a
time, and every access token issued before it is rejected, by the socket
(`realtime.auth.tokens`), the HTTP API (`realtime.auth.drf`) and token verify alike.
A password change, a deactivation and a logout with `all` also store a time for the
refresh tokens, which `token/refresh/` then refuses (`realtime.http.token_views`).
"""

from __future__ import annotations

import calendar
import copy
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.utils import timezone

from realtime.signals import REASONS, credentials_revoked

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


class CredentialState(models.Model):
    """When the user's credentials were last revoked (one row per user, made on first revocation).

    `revoked_at` ends the access tokens issued before it (every revocation, a logout
    too); `refresh_revoked_at` the refresh tokens (a password change, a deactivation, a
    logout with `all`: what must end every session, not one device's).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="credential_state"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    refresh_revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"credentials of user {self.user_id} revoked at {self.revoked_at}"

    def revokes(self, issued_at: int | None, issued_at_us: int | None = None) -> bool:
        """Whether an access token with this `iat` (Unix seconds) and `iat_us` (microseconds) is revoked."""
        return issued_before(self.revoked_at, issued_at, issued_at_us)

    def revokes_refresh(self, issued_at: int | None, issued_at_us: int | None = None) -> bool:
        """Whether a refresh token with this `iat` and `iat_us` is revoked."""
        return issued_before(self.refresh_revoked_at, issued_at, issued_at_us)


def issued_before(revoked_at: datetime | None, issued_at: int | None, issued_at_us: int | None = None) -> bool:
    """Whether a token with this `iat` (Unix seconds) and `iat_us` (microseconds, if any) predates `revoked_at`."""
    # `iat` has whole seconds: with a revocation at 12.5 s, a token issued at 12.3 s
    # and one issued at 12.9 s both carry iat=12. So a token from an earlier second
    # is revoked, one from a later second is not, and in the revocation's own second
    # only a token stamped to the microsecond (`iat_us`, which the token endpoints
    # add: realtime.auth.tokens.PreciseAccessToken and PreciseRefreshToken) can show it came after; one without
    # the stamp is revoked. Thus a user who logs out and straight back in gets a
    # working token, and no token issued before a revocation survives it. Token
    # issuers and this check must share a clock (NTP) for that to hold.
    if revoked_at is None:
        return False
    if issued_at is None:
        return True  # no `iat`: nothing shows it came after the revocation
    revoked_us = unix_microseconds(revoked_at)
    revoked_second = revoked_us // 1_000_000
    if issued_at != revoked_second:
        return issued_at < revoked_second
    return issued_at_us is None or issued_at_us <= revoked_us


def unix_microseconds(moment: datetime) -> int:
    """An aware datetime as whole microseconds since the Unix epoch (exact, unlike a float timestamp)."""
    return calendar.timegm(moment.utctimetuple()) * 1_000_000 + moment.microsecond


def revoke_credentials(user: AbstractBaseUser, reason: str, *, refresh: bool | None = None) -> None:
    """Reject every access token of `user` issued until now; announce it once the transaction commits.

    `refresh` (by default: for every reason but a logout of one device) rejects the
    refresh tokens issued until now too, so no session of the user can mint new access
    tokens: a password change ends them all, and rotation cannot extend one past it.
    """
    revoke_credentials_of([user], reason, refresh=refresh)


def revoke_credentials_of(users: Iterable[AbstractBaseUser], reason: str, *, refresh: bool | None = None) -> None:
    """`revoke_credentials` for many users: their records in one upsert, then one announcement per user."""
    _check_reason(reason)
    users = list(users)
    if refresh is None:
        refresh = reason != "logout"
    now = timezone.now()
    changes = {"revoked_at": now, **({"refresh_revoked_at": now} if refresh else {})}
    # One row per user, made on the first revocation: insert, or update just the fields of this one.
    CredentialState.objects.bulk_create(
        [CredentialState(user=user, **changes) for user in users],
        update_conflicts=True,
        unique_fields=["user"],
        update_fields=list(changes),
    )
    for user in users:
        announce_revocation(user, reason)


def announce_revocation(user: AbstractBaseUser, reason: str) -> None:
    """Send `credentials_revoked` for `user` after the current transaction commits (at once without one)."""
    _check_reason(reason)
    # A copy, so a receiver still sees `user.pk` after a delete has cleared it on the original.
    snapshot = copy.copy(user)
    # send_robust: once the revocation is committed, a failing receiver (say, the
    # channel layer is down) is logged by Django and must not turn it into an error.
    send = partial(credentials_revoked.send_robust, sender=get_user_model(), user=snapshot, reason=reason)
    transaction.on_commit(send)


def _check_reason(reason: str) -> None:
    if reason not in REASONS:
        raise ValueError(f"Unknown revocation reason {reason!r}; expected one of {sorted(REASONS)}.")
