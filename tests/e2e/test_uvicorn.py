"""The same application under uvicorn, the production server (`python -m project.serve`, as the
README runs it; the other end-to-end tests run daphne).

What must hold under both: authentication, delivery in order, the session rows, resume
on another process after a kill -9, and a stop that clients survive and that retires the
process (its rows closed and its node gone, through the ASGI lifespan shutdown). What
differs is documented in docs/operations.md: uvicorn closes its sockets itself (1012)
and has no producer for daphne's backpressure (uvicorn's own `send` waits for the
transport).
"""

from __future__ import annotations

import asyncio

from realtime_client import Client

from realtime.models import Connection, Node
from realtime.pubsub.publishing import publish
from tests.conftest import override_realtime

from .rows import poll_rows

WAIT = 30.0  # a bound on waiting for an event, never a measurement
FAST_NODES = {"REALTIME_NODE_HEARTBEAT": 0.5, "REALTIME_CLEANUP_INTERVAL": 0.5}


async def test_a_socket_under_uvicorn_authenticates_subscribes_and_gets_publications(servers, ws, new_user, tokens):
    (server,) = await servers(1, "uvicorn")
    user = await new_user("ann")
    access, _ = await tokens(user)
    client = await ws(server, token=access, welcome=True)
    assert client.welcome["user"] == {"id": user.pk, "username": "ann"}
    reply = await client.request({"type": "subscribe", "id": 1, "channel": "public:uv"})
    assert reply["type"] == "subscribed", reply
    assert (await client.recv_type("join"))["user"]["username"] == "ann"  # its own first connection there
    for n in range(3):
        await client.send({"type": "publish", "id": 10 + n, "channel": "public:uv", "data": n})
    frames: dict[str, list] = {"published": [], "message": []}
    while len(frames["published"]) < 3 or len(frames["message"]) < 3:
        frame = await client.recv()
        assert frame["type"] in (*frames, "ping"), frame
        frames.setdefault(frame["type"], []).append(frame)
    assert [f["id"] for f in frames["published"]] == [10, 11, 12]
    messages = frames["message"]
    assert [m["data"] for m in messages] == [0, 1, 2]
    assert [m["offset"] for m in messages] == [1, 2, 3]
    (row,) = await poll_rows(lambda rows: True, [client.welcome["session"]])  # written a moment after welcome
    assert (row.user_id, row.auth_method, row.node, row.closed_at) == (user.pk, "header", server.node, None)
    await client.close()
    while (await Connection.objects.aget(pk=row.pk)).closed_at is None:
        await asyncio.sleep(0.05)  # the close is written by the consumer after the socket went: poll, bounded
    assert (await Connection.objects.aget(pk=row.pk)).close_code == 1000


async def test_clients_of_a_killed_uvicorn_process_resume_on_another_and_miss_nothing(
    servers, new_user, tokens, redis_layer, redis_url
):
    a, b = await servers(2, "uvicorn", **FAST_NODES)
    access, _ = await tokens(await new_user("ann"))
    received: list = []
    resumed = asyncio.Event()
    got = asyncio.Event()
    client = Client([a.ws_url, b.ws_url], token=access)
    client.on("state", lambda change: change.state == "connected" and change.resumed and resumed.set())
    sub = client.subscribe("public:uvk")
    sub.on("publication", lambda pub: (received.append(pub), got.set()))
    with override_realtime(REDIS_URL=redis_url):
        try:
            await client.connect()
            first = await client.publish("public:uvk", "before")
            async with asyncio.timeout(WAIT):
                while not received:
                    got.clear()
                    await got.wait()
            a.kill9()
            missed = [await publish("public:uvk", f"missed {n}") for n in range(3)]
            await asyncio.wait_for(resumed.wait(), WAIT)
            async with asyncio.timeout(WAIT):
                while received[-1].offset < missed[-1].offset:
                    got.clear()
                    await got.wait()
        finally:
            await client.disconnect()
    assert [pub.offset for pub in received] == list(range(first.offset, missed[-1].offset + 1))
    assert [pub.data for pub in received] == ["before", "missed 0", "missed 1", "missed 2"]


async def test_a_stopped_uvicorn_process_lets_its_clients_reconnect_and_resume(servers, new_user, tokens):
    """SIGTERM: uvicorn closes its sockets (1012 service restart, or our 1001); the client reconnects."""
    (server,) = await servers(1, "uvicorn", **FAST_NODES)
    access, _ = await tokens(await new_user("ann"))
    states: list = []
    back = asyncio.Event()
    client = Client([server.ws_url], token=access)

    def on_state(change) -> None:
        states.append(change)
        if change.state == "connected" and change.resumed:
            back.set()

    client.on("state", on_state)
    client.subscribe("public:uvs")
    try:
        await client.connect()
        first = client.session
        await server.aterminate()
        # Retired by its lifespan shutdown: the row closed by its consumer, the node gone, nothing
        # left for a cleanup (there is no other process here to run one).
        row = await Connection.objects.aget(session_id=first, resumed=False)
        assert row.closed_at is not None and row.close_code in (1001, 1012), (row.close_code, row.close_reason)
        assert not await Node.objects.filter(name=row.node).aexists()
        server.start(same_port=True)
        await server.wait_ready()
        await asyncio.wait_for(back.wait(), WAIT)
    finally:
        await client.disconnect()
    (drop,) = [change for change in states if change.state == "disconnected"][:1]
    assert drop.code in (1001, 1012, 1006), drop  # a reconnecting code, whichever the server sent
