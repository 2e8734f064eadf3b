"""realtime.auth.middleware as an ASGI app around a recorder, and the token pipeline it runs
(realtime.auth.tokens) against the real database: no mocks."""

import asyncio
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.test import Client, override_settings
from rest_framework_simplejwt.tokens import AccessToken

from realtime.auth.cache import authenticate_token
from realtime.auth.middleware import JWTAuthMiddleware, JWTAuthMiddlewareStack
from realtime.auth.revocation import revoke_credentials
from realtime.auth.tokens import (
    Authenticated,
    ExpiredCredentials,
    InvalidCredentials,
    PreciseAccessToken,
    user_for_token,
    validate_access_token,
)
from realtime.models import CredentialState
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ANONYMOUS = {"method": None, "expires_at": None, "error": None, "checked_us": 0}
ALLOWED_ORIGIN = (b"origin", b"http://localhost:8000")


class Recorder:
    """The inner application: records the scope it is called with."""

    def __init__(self) -> None:
        self.scopes: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        self.scopes.append(scope)


async def never_receive():
    raise AssertionError("the middleware must not read from the socket")


async def never_send(message):
    raise AssertionError("the middleware must not write to the socket")


HOST = (b"host", b"localhost:8000")  # the server's own origin is then http://localhost:8000


async def handshake(*headers: tuple[bytes, bytes], query: str = "", scheme: str = "ws") -> dict:
    """Run the middleware stack on a WebSocket handshake (with `HOST` unless one is given); the inner app's scope."""
    inner = Recorder()
    headers = headers if any(name == b"host" for name, _ in headers) else (HOST, *headers)
    scope = {"type": "websocket", "path": "/ws/", "headers": list(headers), "query_string": query.encode(),
             "scheme": scheme}  # fmt: skip
    await JWTAuthMiddlewareStack(inner)(scope, never_receive, never_send)
    assert len(inner.scopes) == 1
    assert "user" not in scope and "auth" not in scope, "the caller's scope must not change"
    return inner.scopes[0]


def token_for(user, *, lifetime: timedelta | None = None, plain: bool = False) -> str:
    """An access token of `user` as the token endpoint issues it (stamped with `iat_us`;
    simplejwt's own with `plain`), optionally with another lifetime."""
    token = (AccessToken if plain else PreciseAccessToken).for_user(user)
    if lifetime is not None:
        token.set_exp(lifetime=lifetime)
    return str(token)


def expired_token(user) -> str:
    return token_for(user, lifetime=-timedelta(seconds=1))


def bearer(token: str, scheme: str = "Bearer") -> tuple[bytes, bytes]:
    return (b"authorization", f"{scheme} {token}".encode())


def assert_authenticated(scope: dict, user, method: str, expires_at: int | None) -> None:
    assert scope["user"] == user
    assert scope["user"].is_authenticated
    checked_us = scope["auth"]["checked_us"]  # when the check began: a revocation after it is heard by the socket
    assert 0 < checked_us <= time.time_ns() // 1000
    assert scope["auth"] == {"method": method, "expires_at": expires_at, "error": None, "checked_us": checked_us}


def assert_refused(scope: dict, method: str, error: str) -> None:
    assert isinstance(scope["user"], AnonymousUser)
    assert scope["auth"] == {"method": method, "expires_at": None, "error": error, "checked_us": 0}


def assert_anonymous(scope: dict) -> None:
    assert isinstance(scope["user"], AnonymousUser)
    assert scope["auth"] == ANONYMOUS


@pytest.fixture
def browser(user) -> Client:
    """A browser where `user` is logged in to the site."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def session_cookie(browser) -> tuple[bytes, bytes]:
    """The Cookie header that browser sends."""
    key = browser.cookies[settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}; theme=dark".encode())


# Tokens in the header and the query string


async def test_no_credentials_is_anonymous():
    assert_anonymous(await handshake())


async def test_header_token(user):
    token = token_for(user)
    scope = await handshake(bearer(token))
    assert_authenticated(scope, user, "header", AccessToken(token)["exp"])


async def test_header_scheme_is_case_insensitive(user):
    token = token_for(user)
    assert_authenticated(await handshake(bearer(token, "bearer")), user, "header", AccessToken(token)["exp"])


async def test_query_token(user):
    token = token_for(user)
    scope = await handshake(query=f"resume=s_1&token={token}")
    assert_authenticated(scope, user, "query", AccessToken(token)["exp"])


async def test_header_wins_over_query(user, make_user):
    bob = await sync_to_async(make_user)("bob")
    scope = await handshake(bearer(token_for(user)), query=f"token={token_for(bob)}")
    assert scope["user"] == user and scope["auth"]["method"] == "header"


async def test_an_empty_query_token_is_absent():
    assert_anonymous(await handshake(query="token="))


async def test_another_authorization_scheme_is_not_ours(user):
    token = token_for(user)
    scope = await handshake((b"authorization", b"Basic YW5uOnB3"), query=f"token={token}")
    assert_authenticated(scope, user, "query", AccessToken(token)["exp"])


@pytest.mark.parametrize("value", [b"Bearer", b"Bearer ", b"Bearer a b", b"Bearer not-a-jwt"])
async def test_a_malformed_bearer_header_is_invalid(value):
    assert_refused(await handshake((b"authorization", value)), "header", "invalid")


async def test_a_bad_header_token_does_not_fall_through(user, session_cookie):
    scope = await handshake(bearer("not-a-jwt"), session_cookie, ALLOWED_ORIGIN, query=f"token={token_for(user)}")
    assert_refused(scope, "header", "invalid")


async def test_a_bad_query_token_does_not_fall_through_to_the_cookie(session_cookie):
    assert_refused(await handshake(session_cookie, ALLOWED_ORIGIN, query="token=not-a-jwt"), "query", "invalid")


@pytest.mark.parametrize("where", ["header", "query"])
async def test_an_expired_token_is_recorded_as_expired(user, where):
    token = expired_token(user)
    scope = await (handshake(bearer(token)) if where == "header" else handshake(query=f"token={token}"))
    assert_refused(scope, where, "expired")


async def test_a_token_of_an_inactive_user_is_invalid(make_user):
    bob = await sync_to_async(make_user)("bob", is_active=False)
    assert_refused(await handshake(bearer(token_for(bob))), "header", "invalid")


async def test_a_token_of_a_deleted_user_is_invalid(user):
    token = token_for(user)
    await user.adelete()
    assert_refused(await handshake(bearer(token)), "header", "invalid")


@pytest.mark.parametrize("plain", [False, True])
async def test_a_token_issued_just_before_a_revocation_is_revoked(user, plain):
    # Most likely in the revocation's own second: settled by iat_us, or refused without it.
    before = token_for(user, plain=plain)
    assert (await handshake(bearer(before)))["user"] == user
    await sync_to_async(revoke_credentials)(user, "logout")
    assert_refused(await handshake(bearer(before)), "header", "invalid")
    assert_refused(await handshake(query=f"token={before}"), "query", "invalid")


async def test_a_token_issued_right_after_a_revocation_works(user):
    await sync_to_async(revoke_credentials)(user, "logout")
    after = token_for(user)  # most likely in the revocation's own second
    assert_authenticated(await handshake(bearer(after)), user, "header", AccessToken(after)["exp"])


async def test_a_custom_header_name_and_type(user):
    jwt = {**settings.SIMPLE_JWT, "AUTH_HEADER_NAME": "HTTP_X_ACCESS_TOKEN", "AUTH_HEADER_TYPES": "JWT"}
    token = token_for(user)
    with override_settings(SIMPLE_JWT=jwt):
        assert (await handshake((b"x-access-token", f"JWT {token}".encode())))["user"] == user
        assert_anonymous(await handshake(bearer(token)))


# The session cookie, and the Origin that decides whether it counts


@pytest.mark.parametrize(
    ("host", "scheme", "origin"),
    [
        (b"localhost:8000", "ws", b"http://localhost:8000"),
        (b"LOCALHOST:8000", "ws", b"http://localhost:8000"),
        (b"127.0.0.1", "wss", b"https://127.0.0.1"),
        (b"127.0.0.1:443", "wss", b"https://127.0.0.1"),  # the default port, written or not
        (b"[::1]:8000", "ws", b"http://[::1]:8000"),
    ],
)
async def test_session_cookie_from_the_servers_own_origin(user, session_cookie, host, scheme, origin):
    scope = await handshake(session_cookie, (b"host", host), (b"origin", origin), scheme=scheme)
    assert_authenticated(scope, user, "cookie", None)


@pytest.mark.parametrize(
    "origin",
    [
        b"http://localhost:8001",  # another port
        b"https://localhost:8000",  # another scheme
        b"http://app.localhost:8000",  # a subdomain
        b"http://127.0.0.1:8000",  # another name of this machine, not the origin the page came from
    ],
)
async def test_session_cookie_from_an_origin_that_differs_in_any_part_is_ignored(session_cookie, origin):
    assert_anonymous(await handshake(session_cookie, (b"origin", origin)))


async def test_behind_a_tls_proxy_the_origin_is_https_as_the_proxy_says(user, session_cookie):
    origin = (b"origin", b"https://localhost:8000")
    assert_anonymous(await handshake(session_cookie, origin, (b"x-forwarded-proto", b"https")))  # not trusted
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        scope = await handshake(session_cookie, origin, (b"x-forwarded-proto", b"https"))
    assert_authenticated(scope, user, "cookie", None)


async def test_trusted_origins_may_use_the_cookie(user, session_cookie):
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://app.example.com", "https://*.example.org"]):
        for origin in (b"https://app.example.com", b"https://www.example.org"):
            assert_authenticated(await handshake(session_cookie, (b"origin", origin)), user, "cookie", None)
        for origin in (b"http://app.example.com", b"https://example.com", b"https://app.example.com:8443"):
            assert_anonymous(await handshake(session_cookie, (b"origin", origin)))


@pytest.mark.parametrize("host", [b"evil.example", b"evil.example:8000", b"", b"localhost.evil.example"])
async def test_a_handshake_for_a_host_not_in_allowed_hosts_is_refused(host):
    inner = Recorder()
    sent = []
    events = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1006}]

    async def receive():
        return events.pop(0)

    async def send(message):
        sent.append(message)

    headers = [(b"host", host)] if host else []
    scope = {"type": "websocket", "path": "/ws/", "headers": headers, "query_string": b""}
    await asyncio.wait_for(JWTAuthMiddlewareStack(inner)(scope, receive, send), 10)
    assert inner.scopes == []  # never authenticated, never reached the consumer
    assert [message["type"] for message in sent] == ["websocket.close"]  # before accept: HTTP 403


async def test_a_client_that_authenticates_in_its_first_frame_is_not_taken_by_the_cookie(user, session_cookie):
    """`?auth=frame`: a token client in a browser that also holds someone's session cookie."""
    origin = (b"origin", b"http://localhost:8000")
    assert_anonymous(await handshake(session_cookie, origin, query="auth=frame"))
    assert_authenticated(await handshake(session_cookie, origin, query="auth=other"), user, "cookie", None)


async def test_session_cookie_without_origin_is_ignored(session_cookie):
    assert_anonymous(await handshake(session_cookie))


@pytest.mark.parametrize(
    "origin",
    [b"http://evil.example", b"http://localhost.evil.example", b"null", b"localhost", b"http://[::1", b""],
)
async def test_session_cookie_from_a_foreign_origin_is_ignored(session_cookie, origin):
    assert_anonymous(await handshake(session_cookie, (b"origin", origin)))


async def test_a_wildcard_allowed_host_does_not_let_every_origin_use_the_cookie(session_cookie):
    with override_settings(ALLOWED_HOSTS=["*"]):
        assert_anonymous(await handshake(session_cookie, (b"origin", b"http://evil.example")))


async def test_an_allowed_subdomain_pattern_serves_each_subdomain_its_own_origin(user, session_cookie):
    with override_settings(ALLOWED_HOSTS=[".example.com"]):
        host = (b"host", b"app.example.com")
        scope = await handshake(session_cookie, host, (b"origin", b"https://app.example.com"), scheme="wss")
        assert_authenticated(scope, user, "cookie", None)
        assert_anonymous(await handshake(session_cookie, host, (b"origin", b"https://www.example.com"), scheme="wss"))


@pytest.mark.parametrize(("debug", "authenticated"), [(True, True), (False, False)])
async def test_empty_allowed_hosts_means_localhost_in_debug_only(session_cookie, debug, authenticated):
    with override_settings(ALLOWED_HOSTS=[], DEBUG=debug):
        if debug:
            scope = await handshake(session_cookie, ALLOWED_ORIGIN)
            assert scope["user"].is_authenticated is authenticated
        else:
            await test_a_handshake_for_a_host_not_in_allowed_hosts_is_refused(b"localhost:8000")


async def test_an_allowed_origin_without_a_session_is_anonymous():
    assert_anonymous(await handshake(ALLOWED_ORIGIN, (b"cookie", b"theme=dark")))


async def test_a_session_of_a_logged_out_user_is_anonymous(browser, session_cookie):
    await sync_to_async(browser.logout)()
    assert_anonymous(await handshake(session_cookie, ALLOWED_ORIGIN))


async def test_a_session_from_before_a_password_change_is_anonymous(user, session_cookie):
    user.set_password(PASSWORD + "!")
    await user.asave()
    assert_anonymous(await handshake(session_cookie, ALLOWED_ORIGIN))


async def test_a_session_of_a_deactivated_user_is_anonymous(user, session_cookie):
    user.is_active = False
    await user.asave()
    assert_anonymous(await handshake(session_cookie, ALLOWED_ORIGIN))


async def test_only_websocket_scopes():
    with pytest.raises(ValueError, match="WebSocket"):
        await JWTAuthMiddleware(Recorder())({"type": "http", "headers": []}, never_receive, never_send)


# The pipeline itself: realtime.auth.tokens against the database


async def test_authenticate_token(user):
    token = token_for(user)
    before = time.time_ns() // 1000
    result = await authenticate_token(token)
    assert before <= result.checked_us <= time.time_ns() // 1000
    assert result == Authenticated(
        user=user,
        expires_at=AccessToken(token)["exp"],
        issued_at=AccessToken(token)["iat"],
        checked_us=result.checked_us,
    )


async def test_authenticate_token_expired_and_invalid(user):
    with pytest.raises(ExpiredCredentials):
        await authenticate_token(expired_token(user))
    with pytest.raises(InvalidCredentials):
        await authenticate_token(token_for(user)[:-3])


@pytest.mark.parametrize("user_id", ["999999", "not-a-number"])
def test_a_token_naming_no_user_is_invalid(user_id):
    token = AccessToken()
    token["user_id"] = user_id
    with pytest.raises(InvalidCredentials, match="does not exist"):
        user_for_token(validate_access_token(str(token)))


@pytest.mark.parametrize("revoked", [False, True])
def test_loading_the_user_is_one_query(user, django_assert_num_queries, revoked):
    if revoked:
        CredentialState.objects.create(user=user, revoked_at=None)
    token = validate_access_token(token_for(user))
    with django_assert_num_queries(1):
        assert user_for_token(token) == user


def test_a_revocation_rejects_older_tokens_only(user):
    old = validate_access_token(token_for(user))
    revoke_credentials(user, "password_changed")
    with pytest.raises(InvalidCredentials, match="revoked"):
        user_for_token(old)
    assert user_for_token(validate_access_token(token_for(user))) == user


async def test_the_stack_hands_send_through_untouched_and_the_session_is_only_read(session_cookie):
    """No wrapper per outgoing message (Channels' SessionMiddleware checks the session on each)."""
    seen = {}

    async def inner(scope, receive, send):
        seen.update(send=send, session=scope["session"])

    headers = [HOST, session_cookie, ALLOWED_ORIGIN]
    scope = {"type": "websocket", "path": "/ws/", "headers": headers, "query_string": b""}
    await JWTAuthMiddlewareStack(inner)(scope, never_receive, never_send)
    assert seen["send"] is never_send
    assert seen["session"].session_key and not seen["session"].modified


async def test_a_handshake_without_a_session_cookie_keeps_no_session_store(user):
    """An idle socket on a token holds no Django session object (memory per socket)."""
    seen = {}

    async def inner(scope, receive, send):
        seen.update(session=scope["session"], user=scope["user"])

    headers = [HOST, (b"authorization", f"Bearer {token_for(user)}".encode())]
    scope = {"type": "websocket", "path": "/ws/", "headers": headers, "query_string": b""}
    await JWTAuthMiddlewareStack(inner)(scope, never_receive, never_send)
    assert seen["session"] is None and seen["user"] == user
