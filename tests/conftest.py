"""Fixtures shared by every kind of test: users, tokens, API clients, Redis."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from realtime.auth.tokens import PreciseRefreshToken
from realtime.testing import fresh_node

PASSWORD = "correct-horse-battery"

# Figures tests recorded with the `timings` fixture (tests/e2e/conftest.py), gathered from the
# reports (so also from xdist workers) and printed at the end: informational, never asserted.
_TIMINGS: list[tuple[str, str, float]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _TIMINGS.extend((report.nodeid, *value) for name, value in report.user_properties if name == "timing")


def pytest_terminal_summary(terminalreporter) -> None:
    if _TIMINGS:
        terminalreporter.section("e2e timings (informational, not pass/fail)")
        for test, what, seconds in _TIMINGS:
            terminalreporter.write_line(f"{seconds * 1000:8.1f} ms  {what}  [{test.rpartition('::')[2]}]")


@pytest.fixture
def make_user(django_user_model):
    """Create users: `make_user("ann", is_staff=True)`."""

    def make(username: str = "ann", **fields):
        return django_user_model.objects.create_user(username=username, password=PASSWORD, **fields)

    return make


@pytest.fixture
def user(make_user):
    return make_user("ann")


def make_tokens(user) -> tuple[str, str]:
    """A fresh (access, refresh) pair for `user`, as the token endpoint issues it."""
    refresh = PreciseRefreshToken.for_user(user)
    return str(refresh.access_token), str(refresh)


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def api_login(api):
    """`api_login(user)`: the API client, authenticated as `user` with a bearer token, as a real client does."""

    def as_user(user):
        access, _ = make_tokens(user)
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        return api

    return as_user


@pytest.fixture
def redis_url() -> str:
    """The real Redis the suite runs against (started by scripts/runtests.py)."""
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.fail("TEST_REDIS_URL is not set: run the suite with `make test` (it provides Redis).")
    return url


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


class override_realtime(override_settings):  # noqa: N801 - used as Django's override_settings is
    """`override_settings` for keys of `REALTIME`, merged into the REALTIME in force when it is entered.

    `@override_realtime(HEARTBEAT=0.2)` (or a dict) changes those keys only: a test on the Redis
    backend (REDIS_URL set by a fixture) keeps it under a decorator that sets a timer.
    """

    def __init__(self, values: dict | None = None, /, **keys) -> None:
        self.realtime = {**(values or {}), **keys}
        super().__init__()

    def enable(self) -> None:
        self.options = {"REALTIME": {**(getattr(settings, "REALTIME", None) or {}), **self.realtime}}
        super().enable()


@pytest.fixture(autouse=True)
def realtime_node():
    """Every test runs on a Node of its own: no engine, hub, tracker or socket of another test."""
    with fresh_node() as node:
        yield node


@pytest.fixture
def redis_layer(redis_url, redis_prefix):
    """Run the test with Redis for the app under this test's prefix."""
    with override_realtime(REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix):
        yield redis_url


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Django's cache (login failure counts) starts empty for every test, as after a restart."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
