"""Browser credentials at the handshake: the access token in `Sec-WebSocket-Protocol`
(docs/protocol.md 11.4), so that a browser needs no anonymous place under a flood.

A browser cannot set `Authorization` on a WebSocket, but it can offer subprotocols:
`new WebSocket(url, ["realtime.v1", "realtime.bearer.<access>"])`. The server takes the
token from the offer and accepts with `realtime.v1`, never echoing the token.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from realtime.models import Connection
from realtime.sessions import rows as sessions
from realtime.socket.admission import gate
from tests.conftest import make_tokens, override_realtime
from tests.integration.test_admission import limits, refused, still_open
from tests.integration.test_metrics import scrape
from tests.integration.test_socket_resume import drop

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# RFC 7230 `token` (RFC 6455 4.1: each subprotocol is a token); browsers throw on anything else.
TOKEN_CHARS = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def offer(access: str) -> list[str]:
    """What the browser client offers: the protocol version, then the bearer token."""
    return ["realtime.v1", f"realtime.bearer.{access}"]


async def test_a_bearer_subprotocol_authenticates_and_only_realtime_v1_is_echoed(connect, user):
    access, refresh = await sync_to_async(make_tokens)(user)
    # A JWT is base64url parts joined by dots: every character is a subprotocol token character.
    assert TOKEN_CHARS.match(f"realtime.bearer.{access}") and TOKEN_CHARS.match(refresh)
    socket = await connect(subprotocols=offer(access))
    assert socket.subprotocol == "realtime.v1"
    welcome = await socket.recv()
    assert welcome["type"] == "welcome" and "id" not in welcome
    assert welcome["user"] == {"id": user.pk, "username": "ann"}
    assert welcome["expires_at"] == AccessToken(access)["exp"]
    assert gate().total == 0  # it never held an anonymous place
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert row.auth_method == "protocol" and row.user_id == user.pk


async def test_realtime_v1_alone_is_accepted_and_authenticates_with_its_first_frame(connect, user):
    access, _ = await sync_to_async(make_tokens)(user)
    socket = await connect(subprotocols=["realtime.v1"])
    assert socket.subprotocol == "realtime.v1"
    assert gate().total == 1  # no credentials at the handshake: it holds a place until `auth`
    welcome = await socket.request({"type": "auth", "id": 1, "token": access})
    assert welcome["type"] == "welcome" and welcome["user"]["id"] == user.pk


async def test_no_subprotocol_offered_none_chosen(connect, user):
    access, _ = await sync_to_async(make_tokens)(user)
    socket = await connect(token=access)
    assert socket.subprotocol is None
    assert (await socket.recv())["type"] == "welcome"


async def test_a_bad_bearer_subprotocol_is_4501_and_never_falls_through_to_the_cookie(connect, user, client):
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"origin", b"http://localhost:8000")]
    socket = await connect(subprotocols=offer("not-a-token"), headers=headers)
    assert socket.subprotocol == "realtime.v1"
    await socket.expect_disconnect(4501)


async def test_an_expired_bearer_subprotocol_is_4009(connect, user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-60))
    socket = await connect(subprotocols=offer(str(token)))
    await socket.expect_disconnect(4009)


async def test_a_session_resumes_with_subprotocol_credentials(backend, login, connect):
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:p"})
    await drop(ann)
    access, _ = await sync_to_async(make_tokens)(ann.user)
    again = await connect(subprotocols=offer(access), query=f"resume={ann.welcome['session']}")
    welcome = await again.recv_type("welcome")
    assert welcome["resumed"] is True and welcome["session"] == ann.welcome["session"]
    assert (await again.recv_type("subscribed"))["channel"] == "public:p"


async def test_under_an_anonymous_flood_a_browser_gets_in_healthz_stays_200_and_metrics_say_it(
    connect, user, ws_app, async_client
):
    access, _ = await sync_to_async(make_tokens)(user)
    before = await scrape()
    with limits(total=2):
        flood = [await connect(client=(f"10.0.5.{n}", 1)) for n in range(2)]
        for socket in flood:
            await still_open(socket)
        await refused(ws_app, "10.0.5.9")  # the process's anonymous places are all taken
        browser = await connect(subprotocols=offer(access), client=("10.0.5.10", 1))
        assert (await browser.recv())["user"]["username"] == "ann"
        # Saturated is not unhealthy: a load balancer must not pull the node for it.
        response = await async_client.get("/healthz")
        assert response.status_code == 200, response.json()
        assert response.json()["sockets"].startswith("saturated: 2 sockets without credentials")
        after = await scrape()
        assert after["realtime_unauthenticated_connections"] == 2
        assert after["realtime_unauthenticated_limit"] == 2
        assert after["realtime_unauthenticated_refused_total"] - before["realtime_unauthenticated_refused_total"] == 1


@override_realtime({"MAX_UNAUTHENTICATED": 7})
async def test_metrics_give_the_anonymous_limit_so_saturation_can_be_alerted_on():
    assert (await scrape())["realtime_unauthenticated_limit"] == 7


@pytest.mark.parametrize("path", ["/", "/ws", "/ws/x/", "/other/", "/api/ws/"])
async def test_a_handshake_for_any_other_path_is_refused(ws_app, path, caplog):
    communicator = WebsocketCommunicator(ws_app, path, headers=[(b"host", b"localhost:8000")])
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    assert f"refused a WebSocket handshake for {path!r}" in caplog.text


async def test_below_a_root_path_the_socket_path_is_under_it(ws_app, user):
    access, _ = await sync_to_async(make_tokens)(user)
    headers = [(b"host", b"localhost:8000"), (b"authorization", f"Bearer {access}".encode())]
    mounted = WebsocketCommunicator(ws_app, "/app/ws/", headers=headers)
    mounted.scope["root_path"] = "/app"
    connected, _ = await mounted.connect(timeout=5)
    assert connected
    assert json.loads(await mounted.receive_from(5))["type"] == "welcome"
    await mounted.disconnect()
    outside = WebsocketCommunicator(ws_app, "/ws/", headers=headers)
    outside.scope["root_path"] = "/app"
    assert not (await outside.connect(timeout=5))[0]
