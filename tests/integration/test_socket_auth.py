"""PROTOCOL section 2 over a socket: every way to authenticate, expiry, refresh."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from rest_framework_simplejwt.tokens import AccessToken

from realtime.models import Connection
from realtime.sessions import rows as sessions
from tests.conftest import make_tokens, override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def short_token(user, seconds: float) -> AccessToken:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return token


async def tokens_for(user):
    return await sync_to_async(make_tokens)(user)


async def test_header_token_gets_welcome_pushed(connect, user):
    access, _ = await tokens_for(user)
    socket = await connect(token=access)
    welcome = await socket.recv()
    assert welcome["type"] == "welcome"
    assert "id" not in welcome
    assert welcome["session"].startswith("s_")
    assert welcome["user"] == {"id": user.pk, "username": "ann"}
    assert welcome["expires_at"] == AccessToken(access)["exp"]
    assert welcome["heartbeat"] == 25 and welcome["resume_window"] == 120
    assert welcome["resumed"] is False
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.select_related("user").aget(session_id=welcome["session"])
    assert row.user == user and row.auth_method == "header" and row.closed_at is None
    assert row.token_expires_at.timestamp() == welcome["expires_at"]


async def test_query_token(connect, user):
    access, _ = await tokens_for(user)
    socket = await connect(query=f"token={access}")
    welcome = await socket.recv()
    assert welcome["type"] == "welcome" and welcome["user"]["id"] == user.pk
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.auth_method == "query"


async def test_first_frame_auth(connect, user):
    access, _ = await tokens_for(user)
    socket = await connect()
    welcome = await socket.request({"type": "auth", "token": access, "id": 1})
    assert welcome["type"] == "welcome" and welcome["id"] == 1
    assert welcome["user"]["username"] == "ann"
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.auth_method == "frame" and row.user_id == user.pk and row.authenticated_at is not None
    again = await socket.request({"type": "auth", "token": access, "id": 2})
    assert again == {"type": "error", "id": 2, "code": "bad_request", "message": again["message"]}


async def test_session_cookie_from_an_allowed_origin(connect, user, client):
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = await connect(headers=[(b"cookie", cookie), (b"origin", b"http://localhost:8000")])
    welcome = await socket.recv()
    assert welcome["type"] == "welcome" and welcome["expires_at"] is None
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.auth_method == "cookie"


async def cookie_socket(connect, client, user):
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = await connect(headers=[(b"cookie", cookie), (b"origin", b"http://localhost:8000")])
    assert (await socket.recv_type("welcome"))["expires_at"] is None
    return socket


async def test_a_django_logout_ends_the_sockets_of_that_browser_session_only(connect, user, client, make_user):
    from django.test import Client

    socket = await cookie_socket(connect, client, user)
    other_browser = await cookie_socket(connect, Client(), user)  # the same user, another session
    access, _ = await sync_to_async(make_tokens)(user)
    token_socket = await connect(token=access)
    await token_socket.recv_type("welcome")
    await sync_to_async(client.logout)()  # Django's logout: the admin's, or a view's
    await socket.expect_disconnect(4503, "forbidden")
    for survivor in (other_browser, token_socket):
        assert await survivor.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}


async def test_a_deleted_session_ends_its_sockets(connect, user, client):
    from django.contrib.sessions.models import Session

    socket = await cookie_socket(connect, client, user)
    # As the admin or `clearsessions` does (a queryset delete sends post_delete per row when someone listens).
    await Session.objects.filter(session_key=client.cookies["sessionid"].value).adelete()
    await socket.expect_disconnect(4503, "forbidden")


async def test_a_cookie_socket_ends_when_its_session_expires(connect, user, client):
    def log_in_for_two_seconds() -> str:
        client.force_login(user)
        session = client.session
        session.set_expiry(2)  # seconds from now
        session.save()
        return session.session_key

    cookie = f"sessionid={await sync_to_async(log_in_for_two_seconds)()}".encode()
    socket = await connect(headers=[(b"cookie", cookie), (b"origin", b"http://localhost:8000")])
    await socket.recv_type("welcome")
    await socket.expect_disconnect(4503, "session_expired")


@pytest.mark.parametrize("origin", [None, b"http://evil.example.com"])
async def test_session_cookie_needs_an_allowed_origin(connect, user, client, origin):
    await sync_to_async(client.force_login)(user)
    headers = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    if origin:
        headers.append((b"origin", origin))
    socket = await connect(headers=headers)
    reply = await socket.request({"type": "subscribe", "channel": "public:lobby", "id": 3})
    assert reply["type"] == "error" and reply["code"] == "unauthorized" and reply["id"] == 3


async def test_unauthenticated_socket_only_answers_auth_and_ping(connect):
    socket = await connect()
    assert await socket.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
    for frame in (
        {"type": "refresh", "token": "x", "id": 2},
        {"type": "subscribe", "channel": "public:a", "id": 3},
        {"type": "publish", "channel": "public:a", "data": 1, "id": 4},
        {"type": "history", "channel": "public:a", "id": 5},
        {"type": "presence", "channel": "public:a", "id": 6},
        {"type": "unsubscribe", "channel": "public:a", "id": 7},
    ):
        reply = await socket.request(frame)
        assert (reply["type"], reply["code"], reply["id"]) == ("error", "unauthorized", frame["id"])


@override_realtime({"AUTH_TIMEOUT": 0.2})
async def test_auth_timeout_closes_4501(connect):
    socket = await connect()
    frame = await socket.expect_disconnect(4501)
    assert frame["reconnect"] is False
    await socket.close()
    # No database write for a socket that never presented valid credentials (PROTOCOL section 2).
    assert await Connection.objects.acount() == 0


async def test_invalid_handshake_token_closes_4501(connect):
    socket = await connect(token="not-a-token")
    frame = await socket.expect_disconnect(4501, "unauthorized")
    assert frame["reconnect"] is False


async def test_expired_handshake_token_closes_4009(connect, user):
    token = short_token(user, -1)
    socket = await connect(query=f"token={token}")
    frame = await socket.expect_disconnect(4009, "token_expired")
    assert frame["reconnect"] is True


async def test_invalid_auth_frame(connect):
    socket = await connect()
    reply = await socket.request({"type": "auth", "token": "garbage", "id": 1})
    assert reply["type"] == "error" and reply["code"] == "unauthorized" and reply["id"] == 1
    await socket.expect_disconnect(4501)


async def test_expired_auth_frame(connect, user):
    socket = await connect()
    reply = await socket.request({"type": "auth", "token": str(short_token(user, -1)), "id": 1})
    assert reply["code"] == "unauthorized"
    await socket.expect_disconnect(4009)


async def test_inactive_user_cannot_authenticate(connect, make_user):
    inactive = await sync_to_async(make_user)("zed", is_active=False)
    access, _ = await tokens_for(inactive)
    socket = await connect(token=access)
    await socket.expect_disconnect(4501)


@override_realtime({"REFRESH_LEAD": 1.0, "HEARTBEAT": 60})
async def test_expiring_then_token_expired(connect, user):
    token = short_token(user, 1.5)
    socket = await connect(token=str(token))
    welcome = await socket.recv()
    assert welcome["expires_at"] == token["exp"]
    expiring = await socket.recv()
    assert expiring == {"type": "expiring", "expires_at": token["exp"]}
    await socket.expect_disconnect(4009, "token_expired")
    await socket.close()
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.close_code == 4009 and row.close_reason == "token_expired"


@override_realtime({"REFRESH_LEAD": 0.9, "HEARTBEAT": 0.3, "HEARTBEAT_TIMEOUT": 5})
async def test_refresh_moves_the_expiry(connect, user):
    token = short_token(user, 1.0)
    socket = await connect(token=str(token))
    welcome = await socket.recv()
    await socket.recv_type("expiring")
    fresh = AccessToken.for_user(user)
    reply = await socket.request({"type": "refresh", "token": str(fresh), "id": 9})
    assert reply == {"type": "refreshed", "id": 9, "expires_at": fresh["exp"]}
    # Five heartbeats (1.5 s) outlive the old token: no disconnect came in between.
    for _ in range(5):
        assert (await socket.recv())["type"] == "ping"
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.refresh_count == 1 and row.token_expires_at.timestamp() == fresh["exp"]


async def test_refresh_with_another_users_token_is_forbidden(connect, user, make_user):
    access, _ = await tokens_for(user)
    other, _ = await tokens_for(await sync_to_async(make_user)("bob"))
    socket = await connect(token=access)
    welcome = await socket.recv()
    reply = await socket.request({"type": "refresh", "token": other, "id": 4})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "forbidden", 4)
    assert await socket.request({"type": "ping", "id": 5}) == {"type": "pong", "id": 5}
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.refresh_count == 0 and row.token_expires_at.timestamp() == welcome["expires_at"]


@pytest.mark.parametrize("bad", ["garbage", "expired"])
async def test_refresh_with_a_bad_token_changes_nothing(connect, user, bad):
    access, _ = await tokens_for(user)
    socket = await connect(token=access)
    welcome = await socket.recv()
    token = "garbage" if bad == "garbage" else str(short_token(user, -1))
    reply = await socket.request({"type": "refresh", "token": token, "id": 4})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "unauthorized", 4)
    assert await socket.request({"type": "ping", "id": 5}) == {"type": "pong", "id": 5}
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.refresh_count == 0


async def test_close_is_recorded(connect, user):
    access, _ = await tokens_for(user)
    socket = await connect(token=access)
    welcome = await socket.recv()
    await socket.close()
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.closed_at is not None and row.close_reason == "client_closed"


# ---------------------------------------------------------------- the database away at authentication


@pytest.fixture
def database_down(monkeypatch):
    """The user lookup fails as it does when the database is unreachable (OperationalError)."""
    from django.db import OperationalError

    from realtime.auth import tokens

    def unreachable(user_id):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(tokens, "load_user", unreachable)
    return monkeypatch


async def test_an_auth_frame_while_the_database_is_down_is_unavailable_and_may_be_sent_again(
    connect, user, database_down
):
    access, _ = await sync_to_async(make_tokens)(user)
    socket = await connect()
    reply = await socket.request({"type": "auth", "token": access, "id": 1})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "unavailable", 1), reply
    database_down.undo()  # the database is back
    welcome = await socket.request({"type": "auth", "token": access, "id": 2})
    assert welcome["type"] == "welcome" and welcome["id"] == 2


async def test_a_handshake_token_while_the_database_is_down_is_unavailable_then_a_reconnecting_close(
    connect, user, database_down
):
    access, _ = await sync_to_async(make_tokens)(user)
    socket = await connect(token=access)
    error = await socket.recv_type("error")
    assert error["code"] == "unavailable" and "id" not in error
    frame = await socket.expect_disconnect(1011, "unavailable")
    assert frame["reconnect"] is True  # not 4501: the client comes back after its backoff
