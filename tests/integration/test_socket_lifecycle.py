"""PROTOCOL sections 5-8 over a socket: heartbeat, errors, limits, close codes."""

import asyncio
import logging

import pytest
from asgiref.sync import sync_to_async

from realtime.core import protocol
from realtime.models import Connection
from realtime.sessions import rows as sessions
from realtime.sessions.live import live
from realtime.socket import handlers
from realtime.socket.consumer import SocketState
from tests.conftest import make_tokens, override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def authed(connect, user):
    """An authenticated socket (welcome already read)."""

    async def open_authed(**kwargs):
        access, _ = await sync_to_async(make_tokens)(user)
        socket = await connect(token=access, **kwargs)
        socket.welcome = await socket.recv_type("welcome")
        return socket

    return open_authed


# ---------------------------------------------------------------- section 5


@override_realtime({"HEARTBEAT": 0.2, "HEARTBEAT_TIMEOUT": 5})
async def test_server_pings_every_heartbeat(authed):
    socket = await authed()
    assert socket.welcome["heartbeat"] == 0.2
    for _ in range(3):
        assert await socket.recv() == {"type": "ping"}
        await socket.send({"type": "pong"})


@override_realtime({"HEARTBEAT": 0.2, "HEARTBEAT_TIMEOUT": 0.2})
async def test_silent_client_is_closed_4004(authed):
    socket = await authed()
    frame = await socket.expect_disconnect(4004, "heartbeat_timeout")
    assert frame["reconnect"] is True
    await socket.close()
    row = await Connection.objects.aget(session_id=socket.welcome["session"])
    assert (row.close_code, row.close_reason) == (4004, "heartbeat_timeout")


@override_realtime({"HEARTBEAT": 0.2, "HEARTBEAT_TIMEOUT": 0.3})
async def test_answering_pings_keeps_the_socket(authed):
    socket = await authed()
    for _ in range(6):  # 1.2 s: well past heartbeat + timeout
        assert await socket.recv() == {"type": "ping"}
        await socket.send({"type": "pong"})


async def test_client_ping_gets_pong_with_its_id(authed):
    socket = await authed()
    assert await socket.request({"type": "ping", "id": "abc"}) == {"type": "pong", "id": "abc"}
    assert await socket.request({"type": "ping"}) == {"type": "pong"}


# ---------------------------------------------------------------- sections 6 and 8


@pytest.mark.parametrize(
    ("frame", "code", "request_id"),
    [
        (b"\x00\x01binary", "bad_request", None),
        ("{not json", "bad_request", None),
        ("[1, 2]", "bad_request", None),
        ('"text"', "bad_request", None),
        ({"id": 1}, "bad_request", 1),
        ({"type": "launch", "id": 2}, "bad_request", 2),
        ({"type": 7, "id": 3}, "bad_request", 3),
        ({"type": "subscribe", "id": 4}, "bad_request", 4),
        ({"type": "subscribe", "id": 5, "channel": "bad name"}, "bad_request", 5),
        ({"type": "publish", "id": 6, "channel": "public:a"}, "bad_request", 6),
        ({"type": "history", "id": 7, "channel": "public:a", "limit": -1}, "bad_request", 7),
        ({"type": "ping", "id": 1.5}, "bad_request", None),
        ({"type": "refresh", "id": 8}, "bad_request", 8),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays(authed, frame, code, request_id):
    socket = await authed()
    await socket.send(frame)
    reply = await socket.recv_type("error")
    assert reply["code"] == code and reply["message"]
    assert reply.get("id") == request_id
    assert await socket.request({"type": "ping", "id": 99}) == {"type": "pong", "id": 99}


@override_realtime({"MAX_FRAME_BYTES": 100})
async def test_too_large(authed):
    socket = await authed()
    await socket.send({"type": "ping", "id": 1, "pad": "x" * 200})
    reply = await socket.recv_type("error")
    assert reply["code"] == "too_large" and "id" not in reply  # an oversized frame is not parsed
    await socket.send({"type": "ping", "id": 1, "pad": "é" * 45})  # 45 characters, over 90 bytes
    assert (await socket.recv_type("error"))["code"] == "too_large"
    assert await socket.request({"type": "ping", "id": 2}) == {"type": "pong", "id": 2}


@override_realtime({"MAX_ERRORS": 3})
async def test_repeated_bad_frames_close_4500(authed):
    socket = await authed()
    for _ in range(3):
        assert (await socket.request("nonsense"))["code"] == "bad_request"
    await socket.send("nonsense")
    assert (await socket.recv_type("error"))["code"] == "bad_request"
    frame = await socket.expect_disconnect(4500, "bad_request")
    assert frame["reconnect"] is False


@override_realtime({"RATE": 0.1, "RATE_BURST": 3, "MAX_ERRORS": 2})
async def test_rate_limit_then_4008(authed):
    socket = await authed()
    for i in range(3):
        await socket.send({"type": "ping", "id": i})
    await socket.send({"type": "ping", "id": 3})
    replies = [await socket.recv_type(kind) for kind in ("pong", "pong", "pong", "error")]
    assert [r["id"] for r in replies] == [0, 1, 2, 3]
    assert replies[3]["code"] == "rate_limited"
    await socket.send({"type": "ping", "id": 4})
    assert (await socket.recv_type("error"))["code"] == "rate_limited"
    await socket.send({"type": "ping", "id": 5})
    assert (await socket.recv_type("error"))["id"] == 5
    frame = await socket.expect_disconnect(4008, "rate_limited")
    assert frame["reconnect"] is True


@override_realtime({"MAX_CONNECTIONS_PER_USER": 2})
async def test_connection_limit_per_user(authed, connect, user):
    first = await authed()
    await authed()
    access, _ = await sync_to_async(make_tokens)(user)
    third = await connect(token=access)
    frame = await third.expect_disconnect(4529, "too_many_connections")
    assert frame["reconnect"] is False
    # a slot frees up when a socket closes
    await first.close()
    fourth = await authed()
    assert fourth.welcome["type"] == "welcome"
    await sessions.flush()  # the rows are written in the background
    assert await Connection.objects.filter(close_code=4529).acount() == 0  # a refused socket leaves no row
    assert await Connection.objects.acount() == 3


@override_realtime({"MAX_CONNECTIONS_PER_USER": 1})
async def test_connection_limit_applies_to_auth_frames(authed, connect, user):
    await authed()
    access, _ = await sync_to_async(make_tokens)(user)
    late = await connect()
    await late.send({"type": "auth", "token": access, "id": 1})
    await late.expect_disconnect(4529)


async def test_unexpected_errors_close_1011_with_a_reference(authed, monkeypatch, caplog):
    async def broken(consumer, request):
        raise RuntimeError("database exploded")

    monkeypatch.setitem(handlers.HANDLERS, protocol.Ping, broken)
    socket = await authed()
    with caplog.at_level(logging.ERROR, logger="realtime.socket.consumer"):
        await socket.send({"type": "ping", "id": 1})
        error = await socket.recv_type("error")
        await socket.expect_disconnect(1011, "internal_error")
    assert error["code"] == "internal" and "database exploded" not in error["message"]
    ref = error["message"].split("ref ")[1].rstrip(").")
    assert ref in caplog.text and "database exploded" in caplog.text


async def test_no_token_reaches_the_log_when_an_auth_frame_meets_a_failure(connect, user, monkeypatch, caplog):
    async def broken(consumer, request):
        raise RuntimeError("the database thread died")

    monkeypatch.setitem(handlers.HANDLERS, protocol.Auth, broken)
    access, refresh = await sync_to_async(make_tokens)(user)
    socket = await connect()
    with caplog.at_level(logging.DEBUG):
        await socket.send({"type": "auth", "id": 1, "token": access, "refresh": refresh})
        assert (await socket.recv_type("error"))["code"] == "internal"
        await socket.expect_disconnect(1011, "internal_error")
    assert "the database thread died" in caplog.text  # the failure is logged ...
    for secret in (access, refresh):  # ... and not a piece of a token
        for piece in secret.split("."):
            assert piece[:16] not in caplog.text


async def test_server_shutdown_says_going_away(authed):
    socket = await authed()
    communicator = socket.communicator
    communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await communicator.future
    sent = [communicator.output_queue.get_nowait() for _ in range(communicator.output_queue.qsize())]
    assert sent[-2]["text"] == protocol.encode(protocol.disconnect(protocol.CloseCode.GOING_AWAY))
    assert sent[-1] == {"type": "websocket.close", "code": 1001, "reason": "going_away"}


# ---------------------------------------------------------------- the send queue


class SlowClient:
    """An ASGI wrapper whose `send` blocks until released (a client that stops reading),
    and which tells when the application has taken a number of input messages."""

    def __init__(self, app):
        self.app = app
        self.reading = asyncio.Event()
        self.reading.set()
        self.calls = 0
        self.called = asyncio.Condition()

    async def __call__(self, scope, receive, send):
        async def slow_send(message):
            await self.reading.wait()
            await send(message)

        async def counted_receive():
            async with self.called:
                self.calls += 1
                self.called.notify_all()
            return await receive()

        return await self.app(scope, counted_receive, slow_send)

    async def handled(self, count):
        """Wait until the application asked for input after handling `count` messages."""
        async with self.called:
            await asyncio.wait_for(self.called.wait_for(lambda: self.calls > count), 5)


@override_realtime({"SEND_QUEUE_BYTES": 2048, "RATE_BURST": 1000, "RATE": 1000})
async def test_a_client_that_does_not_read_is_cut_off_4013(connect, ws_app, user):
    slow = SlowClient(ws_app)
    access, _ = await sync_to_async(make_tokens)(user)
    socket = await connect(token=access, app=slow)
    await socket.recv_type("welcome")
    slow.reading.clear()
    for i in range(200):  # ~25 bytes of pong each: 5 kB, over twice the queue
        await socket.send({"type": "ping", "id": i})
    await slow.handled(201)  # the connect and the 200 pings
    slow.reading.set()
    frames = []
    while True:
        output = await socket.communicator.receive_output(5)
        if output["type"] == "websocket.close":
            break
        frames.append(output["text"])
    assert output == {"type": "websocket.close", "code": 4013, "reason": "slow"}
    assert frames[-1] == protocol.encode(protocol.disconnect(protocol.CloseCode.SLOW))
    assert len(frames) < 200  # the backlog was dropped, not delivered


# ---------------------------------------------------------------- the consumer's own state


async def test_the_consumer_moves_through_one_state_open_authenticated_closed(connect, user):
    before = set(live())
    socket = await connect()
    await socket.request({"type": "ping", "id": 1})  # accepted and served before authentication
    (consumer,) = set(live()) - before
    assert consumer.state is SocketState.OPEN and consumer.user is None
    access, _ = await sync_to_async(make_tokens)(user)
    welcome = await socket.request({"type": "auth", "id": 2, "token": access})
    assert consumer.state is SocketState.AUTHENTICATED and consumer.session_id == welcome["session"]
    await socket.communicator.disconnect(code=1000)
    assert consumer.state is SocketState.CLOSED and consumer.closing


@override_realtime({"HEARTBEAT": 0.5, "HEARTBEAT_TIMEOUT": 5})
async def test_an_idle_socket_holds_a_timer_and_no_task_of_its_own(authed):
    """Deadlines are one timer per socket in the loop's heap, and the outbox writer runs only to send."""
    before = set(live())
    sockets = [await authed() for _ in range(3)]
    for socket in sockets:
        await socket.request({"type": "subscribe", "id": 1, "channel": "public:idle"})
    consumers = set(live()) - before
    assert len(consumers) == 3
    # Until no writer runs (the replies went out; a heartbeat may start one meanwhile), then look
    # at once, with no await in between.
    while writing := [c for c in consumers if c.outbox._writer is not None and not c.outbox._writer.done()]:
        await writing[0].outbox.drain()
    for consumer in consumers:
        assert isinstance(consumer._timer, asyncio.TimerHandle) and not consumer._timer.cancelled()
    ours = [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").startswith(("Outbox.", "RealtimeConsumer.", "Subscriptions."))
    ]
    assert ours == []
    for socket in sockets:  # and the timer still does its work: the next heartbeat ping comes
        assert (await socket.recv_type("ping")) == {"type": "ping"}
