"""One real server: each way to authenticate (header, query string, first frame), and ping/pong."""

import pytest

from tests.e2e.rows import poll_rows

pytestmark = [pytest.mark.e2e]


async def test_header_token(servers, ws, new_user, tokens):
    """`Authorization: Bearer` at the handshake: `welcome` pushed, row recorded with method "header"."""
    (server,) = await servers(1)
    user = await new_user("ann")
    access, _ = await tokens(user)
    client = await ws(server, token=access)
    welcome = await client.recv_type("welcome")
    assert "id" not in welcome
    assert welcome["user"] == {"id": user.pk, "username": "ann"}
    assert welcome["resumed"] is False and welcome["session"].startswith("s_")
    (row,) = await poll_rows(lambda rows: True, [welcome["session"]])  # written in the background
    assert (row.user_id, row.auth_method, row.closed_at) == (user.pk, "header", None)
    assert row.node == server.node
    await client.ping(1)


async def test_query_token(servers, ws, new_user, tokens):
    """`?token=` at the handshake."""
    (server,) = await servers(1)
    user = await new_user("ann")
    access, _ = await tokens(user)
    client = await ws(server, query={"token": access})
    welcome = await client.recv_type("welcome")
    assert welcome["user"]["id"] == user.pk
    (row,) = await poll_rows(lambda rows: True, [welcome["session"]])  # written in the background
    assert row.auth_method == "query"
    await client.ping("q")


async def test_first_frame_auth_and_ping(servers, ws, new_user, tokens):
    """No credentials at the handshake: only `auth` and `ping` work until an `auth` frame succeeds."""
    (server,) = await servers(1)
    user = await new_user("ann")
    access, _ = await tokens(user)
    client = await ws(server)
    assert await client.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
    denied = await client.request({"type": "history", "id": 2, "channel": "public:lobby"})
    assert (denied["type"], denied["id"], denied["code"]) == ("error", 2, "unauthorized")
    welcome = await client.request({"type": "auth", "id": 3, "token": access})
    assert (welcome["type"], welcome["id"], welcome["user"]["id"]) == ("welcome", 3, user.pk)
    (row,) = await poll_rows(lambda rows: True, [welcome["session"]])  # written in the background
    assert (row.user_id, row.auth_method) == (user.pk, "frame")
    assert await client.request({"type": "ping"}) == {"type": "pong"}
    await client.ping("after-auth")


async def test_invalid_token_is_4501(servers, ws):
    """A garbage header token: `disconnect` 4501 and close 4501."""
    (server,) = await servers(1)
    client = await ws(server, token="not-a-jwt")
    frame = await client.expect_disconnect(4501, "unauthorized")
    assert frame["reconnect"] is False
