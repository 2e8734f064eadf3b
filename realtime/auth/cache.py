"""The users that sockets authenticate as, kept per process: a common connect touches neither the database nor a thread.

A connect with a token needs its user (active? which id, name, staff?) and the user's revocation
state. `socket_user` keeps the user, loaded with its revocation state, for USER_CACHE_SECONDS in
the process's Node, and asks the engine (Redis, shared by every process; one GET) for the latest
revocation of that user at every connect:

- every revocation (logout, deactivation, a password change, deletion: `realtime.auth.revocation`)
  is recorded in the engine *before* the database, and the revocation fails when the engine cannot
  record it; so when a logout on any process has answered, the very next connect anywhere sees it;
- a token issued before the engine's revocation is refused, whatever the cached user says, and a
  cached user older than that revocation is loaded again (it may have been deactivated);
- without the engine (Redis down) nothing is cached or trusted: the database answers, as without
  a cache.

What the cache may hold stale for USER_CACHE_SECONDS is what no revocation records: a user made
active again, a new username, new permissions; a socket keeps its user for its whole life anyway.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from rest_framework_simplejwt import settings as jwt_settings  # the module: SIMPLE_JWT changes rebind api_settings

from realtime.auth import tokens
from realtime.auth.tokens import (
    Authenticated,
    InvalidCredentials,
    check_user,
    issued_at,
    issued_at_us,
    user_id_of,
    validate_access_token,
)
from realtime.core.users import user_key
from realtime.engine import get_engine
from realtime.models import issued_before, unix_microseconds
from realtime.support.conf import realtime_settings
from realtime.support.services import SERVICE_ERRORS
from realtime.support.state import current

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from rest_framework_simplejwt.tokens import Token

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _Entry:
    user: AbstractBaseUser
    loaded_at: float  # time.monotonic()
    revoked_us: int  # the revocation the database had when it was loaded (0: none)


class UserCache:
    """User id claim -> the user as last loaded; the oldest go first past LIMIT entries."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    def put(self, key: str, user: AbstractBaseUser) -> _Entry:
        self.entries.pop(key, None)
        if len(self.entries) >= self.LIMIT:
            del self.entries[next(iter(self.entries))]
        state = getattr(user, "realtime_credentials", None)
        revoked = state.revoked_at if state is not None and state.revoked_at is not None else None
        entry = self.entries[key] = _Entry(user, time.monotonic(), unix_microseconds(revoked) if revoked else 0)
        return entry


def user_cache() -> UserCache:
    """This process's cache (a part of its Node)."""
    return current().part(UserCache)


async def socket_user(token: Token) -> AbstractBaseUser:
    """The active, unrevoked user `token` names (InvalidCredentials otherwise), from the cache when it may."""
    seconds = realtime_settings.USER_CACHE_SECONDS
    user_id = user_id_of(token)
    if seconds <= 0:
        return await _from_database(user_id, token)
    key = user_key(user_id)
    try:
        revoked_us = await get_engine().revoked_at(key)
    except SERVICE_ERRORS:  # the engine cannot say what was revoked: trust nothing kept
        return await _from_database(user_id, token)
    cache = user_cache()
    entry = cache.entries.get(key)
    if entry is None or time.monotonic() - entry.loaded_at > seconds or entry.revoked_us < revoked_us:
        entry = await _load(cache, key, user_id)
    check_user(entry.user, token)
    if revoked_us and issued_before(EPOCH + timedelta(microseconds=revoked_us), issued_at(token), issued_at_us(token)):
        raise InvalidCredentials("The token was revoked.")
    return entry.user


async def _load(cache: UserCache, key: str, user_id: Any) -> _Entry:
    """Read the user once for all the connects that want it at the same moment (a user's tabs coming back)."""
    loading = current().loop_part((__name__, "loading"), dict)
    pending = loading.get(key)
    if pending is None:
        pending = loading[key] = asyncio.ensure_future(_read(cache, key, user_id))
        pending.add_done_callback(lambda done: loading.pop(key, None) if loading.get(key) is done else None)
    return await asyncio.shield(pending)  # a connect that gives up must not cancel the others' read


async def _read(cache: UserCache, key: str, user_id: Any) -> _Entry:
    return cache.put(key, await database_sync_to_async(tokens.load_user)(user_id))


async def _from_database(user_id: Any, token: Token) -> AbstractBaseUser:
    user = await database_sync_to_async(tokens.load_user)(user_id)
    check_user(user, token)
    return user


async def authenticate_token(raw: str) -> Authenticated:
    """The socket's pipeline on a raw access token (handshake, `auth`, `refresh`), never blocking the loop."""
    checked_us = time.time_ns() // 1000
    token = validate_access_token(raw)
    return replace(Authenticated.from_token(await socket_user(token), token), checked_us=checked_us)


async def revoked_since(user: AbstractBaseUser, since_us: int) -> bool:
    """Whether the engine recorded a revocation of `user` after `since_us` (Unix microseconds).

    For a socket that may have missed its control event: a credential checked before a later
    revocation is revoked. Without engine records (USER_CACHE_SECONDS 0) the database says.
    """
    user_id = getattr(user, jwt_settings.api_settings.USER_ID_FIELD)
    if realtime_settings.USER_CACHE_SECONDS > 0:
        return await get_engine().revoked_at(user_key(user_id)) > since_us
    try:
        now = await database_sync_to_async(tokens.load_user)(user_id)
    except InvalidCredentials:  # deleted
        return True
    state = getattr(now, "realtime_credentials", None)
    revoked = state.revoked_at if state is not None else None
    return not now.is_active or (revoked is not None and unix_microseconds(revoked) > since_us)
