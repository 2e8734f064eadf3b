"""Login throttling (PROTOCOL section 9): failed guesses per username and per address, then 429 with
Retry-After; password checks at once are capped; the client address honours trusted proxies only."""

import asyncio

import pytest
from django.test import override_settings

from realtime.http import throttling
from tests.conftest import PASSWORD, override_realtime
from tests.e2e.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TOKEN = "/api/auth/token/"


def login(api, username="ann", password=PASSWORD, **extra):
    return api.post(TOKEN, {"username": username, "password": password}, format="json", **extra)


@override_realtime(LOGIN_FAILURES_PER_USER=3, LOGIN_FAILURES_PER_ADDRESS=100, LOGIN_WINDOW=60)
def test_wrong_guesses_for_one_username_pause_its_logins_with_retry_after(api, user, make_user):
    make_user("bob")
    assert [login(api, password="wrong").status_code for _ in range(3)] == [401, 401, 401]
    paused = login(api)  # even the right password: the guesses are what is throttled
    assert paused.status_code == 429 and paused["Retry-After"] == "60"
    assert paused.json()["code"] == "rate_limited"
    assert login(api, "bob").status_code == 200  # another user from the same address is not paused


@override_realtime(LOGIN_FAILURES_PER_USER=3)
def test_successful_logins_count_nothing(api, user):
    assert [login(api).status_code for _ in range(10)] == [200] * 10


@override_realtime(LOGIN_FAILURES_PER_USER=100, LOGIN_FAILURES_PER_ADDRESS=4)
def test_guesses_over_many_usernames_pause_the_address(api, make_user):
    for name in ("a1", "a2", "a3", "a4"):
        assert login(api, name, "wrong").status_code == 401
    make_user("fresh")
    assert login(api, "fresh").status_code == 429
    assert login(api, "fresh", REMOTE_ADDR="10.9.9.9").status_code == 200  # another address is not


@override_realtime(LOGIN_FAILURES_PER_USER=100, LOGIN_FAILURES_PER_ADDRESS=2)
def test_x_forwarded_for_is_ignored_without_a_trusted_proxy(api):
    for forged in ("1.1.1.1", "2.2.2.2"):
        assert login(api, "nobody", "wrong", HTTP_X_FORWARDED_FOR=forged).status_code == 401
    assert login(api, "nobody", "wrong", HTTP_X_FORWARDED_FOR="3.3.3.3").status_code == 429


@override_realtime(LOGIN_FAILURES_PER_USER=100, LOGIN_FAILURES_PER_ADDRESS=2)
def test_behind_a_trusted_proxy_the_forwarded_address_counts(api):
    from rest_framework.settings import api_settings

    with override_settings(REST_FRAMEWORK={**_rest_framework(), "NUM_PROXIES": 1}):
        assert api_settings.NUM_PROXIES == 1
        for _ in range(2):
            assert login(api, "nobody", "wrong", HTTP_X_FORWARDED_FOR="1.1.1.1").status_code == 401
        assert login(api, "nobody", "wrong", HTTP_X_FORWARDED_FOR="1.1.1.1").status_code == 429
        assert login(api, "nobody", "wrong", HTTP_X_FORWARDED_FOR="2.2.2.2").status_code == 401


def _rest_framework():
    from django.conf import settings

    return dict(settings.REST_FRAMEWORK)


@override_realtime(LOGIN_CONCURRENCY=1, LOGIN_WAIT=0.2)
def test_password_checks_at_once_are_capped_and_a_login_that_waits_too_long_is_unavailable(api, user):
    slot = throttling._semaphore()
    assert slot.acquire(timeout=1)  # another login holds the only slot
    try:
        response = login(api)
        assert response.status_code == 503 and response.json()["code"] == "unavailable"
    finally:
        slot.release()
    assert login(api).status_code == 200  # the slot is free again


# ---------------------------------------------------------------- the admin login shares the counts

ADMIN_LOGIN = "/admin/login/"


def admin_login(client, username="ann", password=PASSWORD):
    """POST the admin's login form; the response, and whether it logged the client in."""
    response = client.post(ADMIN_LOGIN, {"username": username, "password": password, "next": "/admin/"})
    return response, "_auth_user_id" in client.session


@pytest.fixture
def staff(make_user):
    return make_user("ann", is_staff=True)


@override_realtime(LOGIN_FAILURES_PER_USER=3, LOGIN_FAILURES_PER_ADDRESS=100, LOGIN_WINDOW=300)
def test_wrong_passwords_at_the_admin_pause_the_admin_and_the_api(client, api, staff):
    assert [admin_login(client, password="wrong")[1] for _ in range(3)] == [False] * 3
    paused, logged_in = admin_login(client)  # the right password, after the limit
    assert paused.status_code == 200 and not logged_in
    assert "Too many failed logins" in paused.content.decode() and "Try again in 5 minutes" in paused.content.decode()
    assert login(api).status_code == 429  # the API counts the admin's failures


@override_realtime(LOGIN_FAILURES_PER_USER=3, LOGIN_FAILURES_PER_ADDRESS=100, LOGIN_WINDOW=60)
def test_wrong_passwords_at_the_api_pause_the_admin(client, api, staff):
    assert [login(api, password="wrong").status_code for _ in range(3)] == [401] * 3
    paused, logged_in = admin_login(client)
    assert not logged_in and "Try again in 1 minute" in paused.content.decode()


@override_realtime(LOGIN_FAILURES_PER_USER=100, LOGIN_FAILURES_PER_ADDRESS=4)
def test_guesses_at_the_admin_over_many_usernames_pause_the_address_for_both(client, api, staff, make_user):
    for name in ("a1", "a2"):
        assert admin_login(client, name, "wrong")[1] is False
    for name in ("a3", "a4"):
        assert login(api, name, "wrong").status_code == 401
    assert login(api).status_code == 429
    assert admin_login(client)[1] is False
    assert login(api, REMOTE_ADDR="10.9.9.9").status_code == 200  # another address is not paused


@override_realtime(LOGIN_FAILURES_PER_USER=3)
def test_the_admin_login_still_works_and_counts_nothing_when_right(client, staff):
    for _ in range(5):
        response, logged_in = admin_login(client)
        assert response.status_code == 302 and logged_in
        client.logout()


# ---------------------------------------------------------------- Redis down


@pytest.fixture
def stoppable_redis(tmp_path):
    """A private redis-server as Django's cache (where the counts live); the test stops it."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        asyncio.run(server.wait_ready())
        cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url}
        with override_settings(CACHES={"default": cache}):
            yield server
    finally:
        server.stop()


def test_a_login_while_redis_is_down_is_unavailable_not_a_500(api, client, staff, stoppable_redis):
    assert login(api).status_code == 200 and login(api, password="wrong").status_code == 401
    stoppable_redis.stop()
    for password in (PASSWORD, "wrong"):
        response = login(api, password=password)
        assert response.status_code == 503 and response.json()["code"] == "unavailable", response.content
    page, logged_in = admin_login(client)
    assert page.status_code == 200 and not logged_in and "unavailable" in page.content.decode()
