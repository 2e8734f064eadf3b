"""The connection loop against a fake server: states and events, close codes, backoff, URLs, liveness."""

import asyncio

import pytest
from realtime_client import ClientState, RealtimeError, StateChange

from .conftest import connect, reconnect
from .fake_server import refused_url

pytestmark = pytest.mark.unit

C = ClientState


async def test_states_and_events_through_a_session(server, make_client):
    client = make_client(server.url)
    async_changes = []

    async def on_state(change):
        async_changes.append(change.state)

    client.on("state", on_state)
    assert client.state is C.DISCONNECTED
    conn, auth = await connect(server, client, session="s_9", user={"id": 3, "username": "bo"})
    assert auth == {"type": "auth", "id": auth["id"], "token": "t0"}
    assert client.state is C.CONNECTED and client.session == "s_9"
    assert (client.user.id, client.user.username) == (3, "bo")

    await conn.close(4011, "force_reconnect")
    down = await client.states.reach(C.DISCONNECTED)
    assert (down.previous, down.code, down.reason) == (C.CONNECTED, 4011, "force_reconnect")
    assert 0 <= down.delay <= 0.01
    await reconnect(server, session="s_9", resumed=True)
    up = await client.states.reach(C.CONNECTED, count=2)
    assert up.resumed is True and up.previous is C.CONNECTING

    await client.disconnect()
    assert client.state is C.CLOSED and client.session is None
    assert client.states.states == [C.CONNECTING, C.CONNECTED, C.DISCONNECTED, C.CONNECTING, C.CONNECTED, C.CLOSED]
    first, last = client.states.items[0], client.states.items[-1]
    assert first == StateChange(C.CONNECTING, C.DISCONNECTED, url=server.url)
    assert (last.code, last.reason) == (1000, "disconnect")
    assert async_changes == client.states.states  # async callbacks run in order, drained by disconnect()


async def test_on_returns_a_remover(server, make_client):
    client = make_client(server.url)
    seen = []
    remove = client.on("state", seen.append)
    remove()
    remove()  # twice is harmless
    await connect(server, client)
    assert seen == [] and client.states.states == [C.CONNECTING, C.CONNECTED]


@pytest.mark.parametrize("code", [1001, 1011, 3999, 4000, 4004, 4013, 4499])
async def test_codes_that_reconnect(server, make_client, code):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    await conn.close(code)
    change = await client.states.reach(C.DISCONNECTED)
    assert change.code == code and change.delay is not None
    _, auth = await reconnect(server, resumed=True)
    assert auth["resume"] == "s_1"
    await client.states.reach(C.CONNECTED, count=2)


async def test_abnormal_closure_reconnects(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    conn.ws.transport.abort()  # no close frame: 1006
    change = await client.states.reach(C.DISCONNECTED)
    assert (change.code, change.reason) == (1006, "abnormal")
    await reconnect(server)


@pytest.mark.parametrize(("code", "reason"), [(1000, "normal"), (4500, "bad_request"), (4503, ""), (4509, "")])
async def test_codes_that_stop(server, make_client, code, reason):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    await conn.close(code, reason)
    change = await client.states.reach(C.CLOSED)
    assert change.code == code and change.delay is None
    assert change.reason == (reason or {4503: "forbidden", 4509: "session_taken_over"}[code])
    await asyncio.wait_for(client._task, 5)  # the loop has ended: no further attempt can follow
    assert len(server.accepted) == 1
    with pytest.raises(RealtimeError) as info:
        await client.publish("room:a", 1)
    assert info.value.code == "closed"


async def test_connect_raises_when_it_closes_before_welcome(server, make_client):
    client = make_client(server.url)
    connecting = asyncio.create_task(client.connect())
    conn = await server.accept()
    await conn.expect("auth")
    await conn.close(4503, "forbidden")
    with pytest.raises(RealtimeError) as info:
        await asyncio.wait_for(connecting, 5)
    assert info.value.code == "closed" and info.value.close_code == 4503


async def test_disconnect_code_is_used_when_no_close_frame_follows(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    await conn.send({"type": "disconnect", "code": 4503, "reason": "forbidden", "reconnect": False})
    conn.ws.transport.abort()
    change = await client.states.reach(C.CLOSED)
    assert (change.code, change.reason) == (4503, "forbidden")


async def test_backoff_grows_until_welcome_then_resets(server, make_client):
    client = make_client(server.url, random=lambda: 1.0, min_delay=0.01, max_delay=1.0)
    conn, _ = await connect(server, client)
    await conn.close(1011)
    for _ in range(2):  # sockets that open but never get a welcome do not reset the counter
        conn = await server.accept()
        await conn.expect("auth")
        await conn.close(1011)
    conn, _ = await reconnect(server)
    await conn.close(1011)
    await client.states.reach(C.DISCONNECTED, count=4)
    delays = [change.delay for change in client.states.items if change.state is C.DISCONNECTED]
    assert delays == [0.01, 0.02, 0.04, 0.01]


async def test_several_urls_round_robin_past_a_refused_one(server, make_client):
    down = refused_url()
    client = make_client([down, server.url])
    connecting = asyncio.create_task(client.connect())
    failed = await client.states.reach(C.DISCONNECTED)
    assert failed.code == 1006 and failed.reason.startswith("connect failed")
    conn, _ = await reconnect(server)
    await asyncio.wait_for(connecting, 5)
    await conn.close(1001)
    await reconnect(server)
    await client.states.reach(C.CONNECTED, count=2)
    urls = [change.url for change in client.states.items if change.state is C.CONNECTING]
    assert urls == [down, server.url, down, server.url]


async def test_ping_is_answered_with_pong(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    await conn.send({"type": "ping"})
    assert await conn.expect("pong", skip=()) == {"type": "pong"}


async def test_silence_past_heartbeat_plus_timeout_reconnects(server, make_client):
    client = make_client(server.url, heartbeat_timeout=0.05)
    conn, _ = await connect(server, client, heartbeat=0.05)
    change = await client.states.reach(C.DISCONNECTED)
    assert (change.code, change.reason) == (4004, "heartbeat_timeout")
    assert await conn.wait_closed() == 4004  # the client closed the dead socket itself
    await reconnect(server)


async def test_no_welcome_within_the_request_timeout_is_a_failed_attempt(server, make_client):
    client = make_client(server.url, request_timeout=0.5)
    asyncio.create_task(client.connect())
    conn = await server.accept()
    await conn.expect("auth")  # and never answer
    change = await client.states.reach(C.DISCONNECTED)
    assert change.reason == "welcome_timeout"
    await reconnect(server)


@pytest.mark.parametrize("code", ["unavailable", "internal"])
async def test_an_auth_the_server_could_not_check_is_retried_after_the_backoff(server, make_client, code):
    """The server keeps the socket open after `unavailable` (Redis or the database away): the client does
    not wait there for the server's 4501 (which would stop it) but reconnects and authenticates again."""
    client = make_client(server.url, request_timeout=30.0)
    asyncio.create_task(client.connect())
    conn = await server.accept()
    auth = await conn.expect("auth")
    await conn.send({"type": "error", "id": auth["id"], "code": code, "message": "Redis is away"})
    change = await client.states.reach(C.DISCONNECTED)
    assert change.reason == f"auth_{code}"
    assert await conn.wait_closed() == 1000  # the client closed the socket itself
    await reconnect(server)


async def test_disconnect_while_waiting_to_retry(make_client):
    client = make_client(refused_url(), min_delay=30.0, max_delay=30.0, random=lambda: 1.0)
    connecting = asyncio.create_task(client.connect())
    change = await client.states.reach(C.DISCONNECTED)
    assert change.delay == 30.0
    await client.disconnect()
    assert client.state is C.CLOSED
    with pytest.raises(RealtimeError):
        await asyncio.wait_for(connecting, 5)


async def test_connect_again_after_disconnect(server, make_client):
    client = make_client(server.url)
    await connect(server, client)
    await client.disconnect()
    _, auth = await connect(server, client)
    assert "resume" not in auth  # a closed client forgot its session
    assert client.state is C.CONNECTED


async def test_async_with_connects_and_disconnects(server):
    from realtime_client import Client

    async def session():
        async with Client(server.url, token="t", min_delay=0.01) as client:
            assert client.state is C.CONNECTED
            sub = client.subscribe("room:a")
            assert client.subscriptions == {"room:a": sub}
            return client

    running = asyncio.create_task(session())
    conn = await server.accept()
    await conn.welcome()
    client = await asyncio.wait_for(running, 5)
    assert client.state is C.CLOSED
    assert await conn.wait_closed() == 1000


async def test_an_exception_inside_one_attempt_is_a_failed_attempt(server, make_client):
    """The injected `connect` returns a socket whose first read raises: the loop reconnects."""
    from websockets.asyncio.client import connect as real_connect

    opened = []

    async def connect(url, **options):
        ws = await real_connect(url, **options)
        opened.append(options)
        if len(opened) == 1:

            async def broken_recv(*args, **kwargs):
                raise RuntimeError("decoder bug")

            ws.recv = broken_recv
        return ws

    client = make_client(server.url, connect=connect)
    asyncio.create_task(client.connect())
    failed = await client.states.reach(C.DISCONNECTED)
    assert failed.code == 1006 and "decoder bug" in failed.reason
    assert isinstance(client.errors.items[0], RuntimeError)
    await server.accept()  # the first socket
    await reconnect(server)
    await client.states.reach(C.CONNECTED)
    assert opened[0]["ping_interval"] is None and opened[0]["open_timeout"] == 2.0


async def test_failing_state_and_error_callbacks_are_isolated(server, make_client, caplog):
    client = make_client(server.url)

    def bad_state(change):
        raise RuntimeError("state callback")

    def bad_error(exc):
        raise RuntimeError("error callback")

    client.on("state", bad_state)
    client.on("error", bad_error)
    await connect(server, client)
    assert client.state is C.CONNECTED
    assert [str(exc) for exc in client.errors.items] == ["state callback", "state callback"]
    assert "error callback" in caplog.text


async def test_disconnect_does_not_wait_forever_for_a_hanging_callback(server, make_client):
    client = make_client(server.url, request_timeout=0.5)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(change):
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client.on("state", hang)
    await connect(server, client)
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(client.disconnect(), 5)
    assert cancelled.is_set() and client.state is C.CLOSED


async def test_an_async_callback_may_disconnect_the_client(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    sub = client.subscribe("room:a")
    await conn.subscribed(await conn.expect("subscribe"), "e1", 0)

    async def stop(pub):
        await client.disconnect()

    sub.on("publication", stop)
    await conn.message("room:a", 1)
    await client.states.reach(C.CLOSED)
    assert await conn.wait_closed() == 1000
