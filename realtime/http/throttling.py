"""Login throttling (PROTOCOL section 9): wrong guesses are counted, password checks are capped.

- Failed logins are counted per username and per client address (`failure_counts`: the app's
  Redis when `REALTIME["REDIS_URL"]` is set, so every process shares the counts; else Django's
  default cache) over LOGIN_WINDOW seconds.
  At LOGIN_FAILURES_PER_USER failures for a username, or LOGIN_FAILURES_PER_ADDRESS from
  an address, further logins are answered 429 `rate_limited` with `Retry-After`, before
  any password is checked. A successful login counts nothing: a user who types the
  password right is never locked out by their own logins. The token API and the admin's
  login form (`login_attempt`) share the counts: a failure is counted wherever Django's
  `authenticate` reports it (`user_login_failed`, connected in `RealtimeConfig.ready`).
  While the cache cannot be reached, logins are answered 503 `unavailable`.
- At most LOGIN_CONCURRENCY password checks run at once in a process (each is a slow hash
  and a database connection): a flood of logins queues instead of using up the
  database's connections; one that waits longer than LOGIN_WAIT seconds gets 503
  `unavailable`.
- The client address (`realtime.auth.addresses`) is the socket's peer (`REMOTE_ADDR`) unless
  proxies are configured in front (DRF's `NUM_PROXIES`): then it is the address those proxies
  saw, taken from `X-Forwarded-For`, and a client cannot pick its own by sending that header.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.cluster
from django.contrib.auth import get_user_model
from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils.translation import ngettext
from redis.exceptions import RedisError
from rest_framework import exceptions

from realtime.auth.addresses import client_address
from realtime.core.redis_urls import CLUSTER_SCHEME, SENTINEL_SCHEME, parse_cluster_url
from realtime.engine.pool import SentinelCachePool
from realtime.http.errors import APIError
from realtime.support.conf import realtime_settings
from realtime.support.state import current


def for_how_long(seconds: float) -> str:
    """`300` -> "5 minutes", `45` -> "45 seconds": a wait as a person reads it (rounded up)."""
    if seconds < 60:
        count = max(1, math.ceil(seconds))
        return ngettext("%d second", "%d seconds", count) % count
    count = math.ceil(seconds / 60)
    return ngettext("%d minute", "%d minutes", count) % count


class LoginsPaused(exceptions.Throttled):
    """Too many failed logins for this username or from this address: no password is checked for a while."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait=wait)
        self.detail = exceptions.ErrorDetail(
            f"Too many failed logins. Try again in {for_how_long(wait)}.", self.default_code
        )


class LoginsUnavailable(APIError):
    """The store of the failure counts (Redis) does not answer: no login can be checked against them."""

    status_code = 503
    default_detail = "Logins are unavailable for a moment; retry shortly."
    default_code = "unavailable"


class PasswordChecksBusy(APIError):
    """Every password-check slot is taken and none came free in time."""

    status_code = 503
    default_detail = "Too many logins at once; retry shortly."
    default_code = "unavailable"


def _keys(request, username: str) -> tuple[str, str]:
    digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"login-failures:user:{digest}", f"login-failures:addr:{client_address(request)}"


@contextmanager
def _reaching_counts() -> Iterator[None]:
    """Around the cache's calls: Redis down is `LoginsUnavailable` (503), not a 500."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise LoginsUnavailable() from exc


class ClusterCounts:
    """The cache operations that login throttling uses, on a Redis Cluster (Django's RedisCache takes one
    server): each count is one key, so each operation stays on one node."""

    def __init__(self, url: str, prefix: str) -> None:
        spec = parse_cluster_url(url)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in spec.nodes]
        self.client = redis.cluster.RedisCluster(startup_nodes=nodes, username=spec.username, password=spec.password)
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def get_many(self, keys: list[str]) -> dict[str, int]:
        found = {key: self.client.get(self._key(key)) for key in keys}
        return {key: int(value) for key, value in found.items() if value is not None}

    def add(self, key: str, value: int, timeout: int) -> bool:
        return bool(self.client.set(self._key(key), value, nx=True, ex=timeout))

    def incr(self, key: str) -> int:
        if not self.client.exists(self._key(key)):
            raise ValueError(f"Key {key!r} not found.")  # as Django's caches say it
        return int(self.client.incr(self._key(key)))


def check_allowed(request, username: str) -> None:
    """Raise `LoginsPaused` (429, Retry-After) when this username or address failed too often."""
    user_key, address_key = _keys(request, username)
    with _reaching_counts():
        found = failure_counts().get_many([user_key, address_key])
    if (
        found.get(user_key, 0) >= realtime_settings.LOGIN_FAILURES_PER_USER
        or found.get(address_key, 0) >= realtime_settings.LOGIN_FAILURES_PER_ADDRESS
    ):
        raise LoginsPaused(wait=realtime_settings.LOGIN_WINDOW)


def record_failure(request, username: str) -> None:
    """Count a failed login for the username and the address (each count lives LOGIN_WINDOW seconds)."""
    window = realtime_settings.LOGIN_WINDOW
    with _reaching_counts():
        for key in _keys(request, username):
            if not failure_counts().add(key, 1, timeout=window):
                try:
                    failure_counts().incr(key)
                except ValueError:  # expired between add and incr
                    failure_counts().add(key, 1, timeout=window)


def count_failure(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    """`user_login_failed` (the token API, the admin, any login form): count it, when it came with a request."""
    if request is not None:
        username = credentials.get(get_user_model().USERNAME_FIELD)
        record_failure(request, username if isinstance(username, str) else "")


@contextmanager
def login_attempt(request, username: str) -> Iterator[None]:
    """One login: refused while paused (429), then run holding a password-check slot.

    A failed password check inside is counted by `count_failure`.
    """
    check_allowed(request, username)  # before any password is checked
    with password_check_slot():
        yield


_making = threading.Lock()  # password checks run in threads: two first callers must not make two semaphores


def _semaphore() -> threading.BoundedSemaphore:
    """LOGIN_CONCURRENCY slots, a part of the process's Node."""
    size = realtime_settings.LOGIN_CONCURRENCY
    with _making:
        return current().part(("login-slots", size), lambda: threading.BoundedSemaphore(size))


def failure_counts() -> BaseCache:
    """Where failed logins are counted: the app's Redis (REALTIME["REDIS_URL"]), shared by every process,
    under `<REDIS_PREFIX>:cache`; without Redis, the project's default cache."""
    url = realtime_settings.REDIS_URL
    if not url:
        return caches["default"]
    prefix = realtime_settings.REDIS_PREFIX
    with _making:
        if url.startswith(CLUSTER_SCHEME):
            return current().part(("login-counts", url, prefix), lambda: ClusterCounts(url, f"{prefix}:cache"))
        options: dict = {"KEY_PREFIX": f"{prefix}:cache"}
        if url.startswith(SENTINEL_SCHEME):  # Django's client reads redis:// URLs only: the pool reads this one
            options["OPTIONS"] = {"pool_class": SentinelCachePool}
        # In a list: a string would be split at its commas (Django's list of servers), a Sentinel URL's hosts.
        return current().part(("login-counts", url, prefix), lambda: RedisCache([url], options))


@contextmanager
def password_check_slot():
    """Hold one of LOGIN_CONCURRENCY slots for a password check; 503 after LOGIN_WAIT seconds."""
    semaphore = _semaphore()
    if not semaphore.acquire(timeout=realtime_settings.LOGIN_WAIT):
        raise PasswordChecksBusy()
    try:
        yield
    finally:
        semaphore.release()
