"""Requests: replies matched by id in the current connection, errors with codes, waiting, timeouts."""

import asyncio
import json

import pytest
from realtime_client import ClientState, History, Member, Position, Publication, Published, RealtimeError

from .conftest import connect, reconnect, roundtrip
from .fake_server import publication, refused_url

pytestmark = pytest.mark.unit


async def test_publish_history_presence(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)

    publishing = asyncio.create_task(client.publish("room:a", {"text": "hi"}))
    request = await conn.expect("publish")
    assert request == {"type": "publish", "id": request["id"], "channel": "room:a", "data": {"text": "hi"}}
    await conn.reply(request, "published", channel="room:a", epoch="e1", offset=58)
    published = await publishing
    assert published == Published("room:a", "e1", 58) and published.position == Position("e1", 58)

    reading = asyncio.create_task(client.history("room:a", since=Position("e1", 40), limit=2))
    request = await conn.expect("history")
    assert (request["since"], request["limit"]) == ({"epoch": "e1", "offset": 40}, 2)
    pubs = [publication("room:a", 41), publication("room:a", 42)]
    await conn.reply(request, "history", channel="room:a", epoch="e1", offset=58, publications=pubs)
    history = await reading
    assert isinstance(history, History) and history.offset == 58
    assert history.publications == [Publication("room:a", "e1", n, None, 7, 1000 + n) for n in (41, 42)]

    reading = asyncio.create_task(client.history("room:a", since=("e1", 3)))
    request = await conn.expect("history")
    assert request["since"] == {"epoch": "e1", "offset": 3} and "limit" not in request
    await conn.reply(request, "history", channel="room:a", epoch="e1", offset=3, publications=[])
    assert (await reading).publications == []

    asking = asyncio.create_task(client.presence("room:a"))
    request = await conn.expect("presence")
    await conn.reply(request, "presence", channel="room:a", members=[{"id": 7, "username": "ann", "connections": 2}])
    assert await asking == [Member(7, "ann", 2)]


async def test_an_error_reply_raises_with_its_code(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    publishing = asyncio.create_task(client.publish("user:9", 1))
    await conn.reply(await conn.expect("publish"), "error", code="permission_denied", message="not yours")
    with pytest.raises(RealtimeError) as info:
        await publishing
    assert (info.value.code, info.value.message, info.value.sent) == ("permission_denied", "not yours", True)


async def test_a_request_waits_for_the_connection(server, make_client):
    client = make_client(server.url)
    publishing = asyncio.create_task(client.publish("room:a", 1))  # before connecting
    connecting = asyncio.create_task(client.connect())
    conn = await server.accept()
    await conn.welcome()
    request = await conn.expect("publish")
    await conn.reply(request, "published", channel="room:a", epoch="e1", offset=1)
    assert (await publishing).offset == 1
    await connecting


async def test_a_request_times_out_waiting_for_the_connection(make_client):
    client = make_client(refused_url(), request_timeout=0.2)  # the server is down: the client keeps retrying
    connecting = asyncio.create_task(client.connect())
    await client.states.reach(ClientState.DISCONNECTED)
    with pytest.raises(RealtimeError) as info:
        await client.publish("room:a", 1)
    # Never sent: nothing happened on the server, safe to retry as is (PROTOCOL §10).
    assert (info.value.code, info.value.sent) == ("not_connected", False) and "not connected" in info.value.message
    assert not connecting.done() and client.state is not ClientState.CLOSED
    never_started = make_client(refused_url(), request_timeout=0.05)
    with pytest.raises(RealtimeError) as info:
        await never_started.history("room:a")
    assert (info.value.code, info.value.sent) == ("not_connected", False)


async def test_a_request_times_out_without_a_reply(server, make_client):
    client = make_client(server.url, request_timeout=0.5)
    conn, _ = await connect(server, client, heartbeat=None)
    with pytest.raises(RealtimeError) as info:
        await client.presence("room:a")
    assert (info.value.code, info.value.sent) == ("timeout", True)  # sent: the outcome is unknown
    request = await conn.expect("presence")
    await conn.reply(request, "presence", channel="room:a", members=[])  # late: dropped
    await roundtrip(conn)
    assert client._core.link.pending == {}


async def test_a_request_fails_when_the_connection_drops(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    publishing = asyncio.create_task(client.publish("room:a", 1))
    await conn.expect("publish")
    await conn.close(1011)
    with pytest.raises(RealtimeError) as info:
        await asyncio.wait_for(publishing, 5)
    assert (info.value.code, info.value.sent) == ("disconnected", True)  # it may have been published
    assert client.state is not ClientState.CLOSED  # it reconnects: the request is not sent again
    conn, _ = await reconnect(server)
    await roundtrip(conn)
    assert [frame["type"] for frame in conn.received] == ["auth", "pong"]


async def stop_by_disconnect(client, conn):
    await client.disconnect()


async def stop_by_a_stop_code(client, conn):
    await conn.close(4503, "forbidden")


@pytest.mark.parametrize("stop", [stop_by_disconnect, stop_by_a_stop_code])
async def test_a_sent_request_fails_closed_when_the_client_closes(server, make_client, stop):
    """`disconnect()` or a do-not-reconnect code before the reply: `closed`, and it had gone out."""
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    publishing = asyncio.create_task(client.publish("room:a", 1))
    await conn.expect("publish")
    await stop(client, conn)
    with pytest.raises(RealtimeError) as info:
        await asyncio.wait_for(publishing, 5)
    assert (info.value.code, info.value.sent) == ("closed", True)


async def test_a_waiting_request_fails_closed_unsent_when_the_client_closes(server, make_client):
    client = make_client(server.url)
    publishing = asyncio.create_task(client.publish("room:a", 1))  # waits for the connection
    connecting = asyncio.create_task(client.connect())
    conn = await server.accept()
    await conn.expect("auth")
    await conn.close(4501, "unauthorized")  # a fixed token: the client stops before it ever connected
    with pytest.raises(RealtimeError) as info:
        await asyncio.wait_for(publishing, 5)
    assert (info.value.code, info.value.sent) == ("closed", False)
    with pytest.raises(RealtimeError) as info:
        await client.publish("room:a", 1)  # on a closed client
    assert (info.value.code, info.value.sent) == ("closed", False)
    with pytest.raises(RealtimeError) as info:
        await connecting
    assert info.value.sent is None  # not a request's error


async def test_stale_and_unknown_replies_are_dropped(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    publishing = asyncio.create_task(client.publish("room:a", 1))
    first = await conn.expect("publish")
    await conn.close(1001)
    with pytest.raises(RealtimeError):
        await publishing
    conn2, _ = await reconnect(server, resumed=True)
    publishing = asyncio.create_task(client.publish("room:a", 2))
    second = await conn2.expect("publish")
    assert second["id"] != first["id"]  # ids are never reused across connections
    await conn2.reply(first, "published", channel="room:a", epoch="e1", offset=99)  # an earlier connection's id
    await conn2.send({"type": "published", "id": "nobody", "channel": "room:a", "epoch": "e1", "offset": 98})
    await conn2.reply(second, "published", channel="room:a", epoch="e1", offset=2)
    assert (await publishing).offset == 2
    assert client.errors.items == []


async def test_a_reply_already_received_wins_over_the_timeout(server, make_client, monkeypatch):
    """The timeout gives received data one loop turn first (centrifuge-js #398)."""
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    real_wait = asyncio.wait

    async def wait_then_deliver(futures, timeout=None):
        # The timer fires while the reply is already in hand: the reader settles it on its next turn.
        (future,) = futures
        if not future.done():
            asyncio.get_running_loop().call_soon(
                client._driver.received,
                json.dumps({"type": "published", "id": max(client._core.link.pending), "epoch": "e", "offset": 1}),
            )
            return set(), set(futures)
        return await real_wait(futures, timeout=timeout)

    monkeypatch.setattr(asyncio, "wait", wait_then_deliver)
    try:
        assert (await client.publish("room:a", 1)).offset == 1
    finally:
        monkeypatch.undo()
