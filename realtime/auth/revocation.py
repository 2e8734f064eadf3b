"""Credential revocation: record it (`realtime.models.CredentialState`), then announce it.

JWT access tokens are stateless: blacklisting the refresh token at logout does not
stop an access token already handed out, which could reconnect a socket until it
expires. So each revocation (logout, deactivation, a password change) stores a
time, and every access token issued before it is rejected, by the socket
(`realtime.auth.tokens`), the HTTP API (`realtime.auth.drf`) and token verify alike.
A password change, a deactivation and a logout with `all` also store a time for the
refresh tokens, which `token/refresh/` then refuses (`realtime.http.token_views`).
Before anything is written the engine records the revocation too, so that no process's
cached user (`realtime.auth.cache`) outlives it. Once the transaction commits,
`realtime.signals.credentials_revoked` tells every process, which closes the user's sockets.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt import settings as jwt_settings

from realtime.core.users import user_key
from realtime.engine import get_engine
from realtime.models import CredentialState, unix_microseconds
from realtime.signals import REASONS, credentials_revoked
from realtime.support.conf import realtime_settings

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


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
    record_in_engine(users, unix_microseconds(now))  # first: the sockets' user caches must never lag the database
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


def record_in_engine(users: list[AbstractBaseUser], at_us: int) -> None:
    """Record the revocation in the engine, which every process's connects consult (`realtime.auth.cache`).

    Raises when the engine cannot record it (Redis down): the revocation then fails as a whole
    (nothing is written), rather than leave another process's cached user trusted.
    """
    if realtime_settings.USER_CACHE_SECONDS <= 0 or not users:
        return
    field = jwt_settings.api_settings.USER_ID_FIELD
    keys = [user_key(getattr(user, field)) for user in users]

    async def record() -> None:
        engine = get_engine()
        for key in keys:
            await engine.record_revocation(key, at_us)

    async_to_sync(record)()


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
