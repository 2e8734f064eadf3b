"""A flood of sockets without credentials: capped per client address and per process (PROTOCOL
section 8), while sockets with credentials at the handshake always get in, and `/healthz` says
when the socket path is saturated."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from realtime.socket.admission import gate
from tests.conftest import make_tokens, override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]



async def refused(ws_app, address: str, headers: list | None = None) -> None:
    """A handshake from `address` is refused (closed before accept: HTTP 403), and holds no place."""
    held = gate().total
    communicator = WebsocketCommunicator(ws_app, "/ws/", headers=[(b"host", b"localhost:8000"), *(headers or [])])
    communicator.scope["client"] = (address, 40000)
    connected, code = await communicator.connect(timeout=5)
    assert (connected, code) == (False, 1000), "a handshake over the cap must be refused"
    await communicator.wait()
    assert gate().total == held


def limits(total: int = 1000, per_address: int = 20):
    return override_realtime({"MAX_UNAUTHENTICATED": total, "MAX_UNAUTHENTICATED_PER_ADDRESS": per_address})


async def still_open(socket) -> None:
    """The socket is served: a `ping` gets its `pong`."""
    assert (await socket.request({"type": "ping", "id": 99})) == {"type": "pong", "id": 99}


async def test_an_address_holds_at_most_its_share_of_unauthenticated_sockets(connect, make_user, ws_app):
    user = await sync_to_async(make_user)("ann")
    access, _ = await sync_to_async(make_tokens)(user)
    with limits(per_address=3):
        flood = [await connect(client=("10.0.0.1", 5000 + n)) for n in range(3)]
        for socket in flood:
            await still_open(socket)
        await refused(ws_app, "10.0.0.1")
        # Another address is not held up by this one's flood.
        other = await connect(client=("10.0.0.2", 5000))
        await still_open(other)
        # Credentials at the handshake need no place: the flood cannot lock a user out.
        with_token = await connect(token=access, client=("10.0.0.1", 5200))
        assert (await with_token.recv_type("welcome"))["user"]["username"] == "ann"
        # A socket that authenticates gives its place back.
        welcome = await flood[0].request({"type": "auth", "id": 1, "token": access})
        assert welcome["type"] == "welcome"
        again = await connect(client=("10.0.0.1", 5300))
        await still_open(again)
        # ... and so does one that closes.
        await flood[1].close()
        assert gate().by_address["10.0.0.1"] == 2
    assert gate().total == 3  # flood[2], other, again: still open and unauthenticated


async def test_a_socket_that_ends_unauthenticated_gives_its_place_back(connect):
    with limits(per_address=1):
        first = await connect(client=("10.0.3.1", 1))
        assert (await first.request({"type": "auth", "id": 1, "token": "not-a-token"}))["code"] == "unauthorized"
        await first.expect_disconnect(4501)
        await first.communicator.wait()
        second = await connect(client=("10.0.3.1", 2))
        await still_open(second)


async def test_the_process_cap_refuses_more_and_healthz_says_saturated(connect, async_client, ws_app):
    with limits(total=2):
        first = await connect(client=("10.0.1.1", 1))
        second = await connect(client=("10.0.1.2", 1))
        await still_open(first)
        await still_open(second)
        await refused(ws_app, "10.0.1.3")
        response = await async_client.get("/healthz")
        assert response.status_code == 200  # saturated, not unhealthy: a load balancer keeps the node
        assert response.json()["sockets"].startswith("saturated: 2 sockets without credentials")
        await first.close()
        response = await async_client.get("/healthz")
        assert response.status_code == 200, response.json()
        assert response.json()["sockets"] == "ok"
        fourth = await connect(client=("10.0.1.4", 1))
        await still_open(fourth)


@pytest.mark.parametrize("proxies, counted_as", [(0, "10.0.2.1"), (1, "203.0.113.9")])
async def test_the_address_is_the_peer_unless_a_trusted_proxy_is_configured(
    connect, proxies, counted_as, settings, ws_app
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
    forwarded = [(b"x-forwarded-for", b"203.0.113.9")]
    with limits(per_address=1):
        held = await connect(client=("10.0.2.1", 1), headers=forwarded)
        await still_open(held)
        assert gate().by_address[counted_as] == 1
        # The same peer claiming another forwarded address: one place per address all the same
        # without a trusted proxy; with one, a different client behind that proxy.
        other = [(b"x-forwarded-for", b"198.51.100.7")]
        if proxies:
            await still_open(await connect(client=("10.0.2.1", 2), headers=other))
        else:
            await refused(ws_app, "10.0.2.1", other)
