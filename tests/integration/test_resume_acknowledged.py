"""PROTOCOL §3 (revised 2026-12-07): a resume without `positions` covers what a broken connection lost.

The server records for a resume only what the client is known to have: the position each
subscription had delivered when a heartbeat `ping` was queued, once the client answered it
(`pong`: the connection is in order, so everything before the ping arrived), or, for a
channel subscribed since, where its subscription started. What was written after that may
have been lost with the connection, and is replayed: a duplicate, which clients drop by
offset, never a miss. On both backends (see tests/e2e/test_broken_connection.py for a
connection broken between real processes).
"""

import pytest
from asgiref.sync import sync_to_async

from realtime.pubsub.publishing import publish
from realtime.sessions import records as resume
from realtime.sessions.live import say_going_away
from tests.conftest import make_tokens, override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Pings often, answers awaited long: the tests choose which pings get their pong.
HEARTBEAT = {"HEARTBEAT": 0.2, "HEARTBEAT_TIMEOUT": 60}


async def sync(socket, name: str) -> None:
    """A request round trip: every frame the socket sent before it has been handled."""
    assert await socket.request({"type": "ping", "id": name}) == {"type": "pong", "id": name}


async def acknowledge(socket) -> None:
    """Tell the server the socket has everything sent so far: a pong to a ping queued after all of it.

    A first pong settles a ping that may still be unanswered (the server keeps the oldest one's
    positions); the first ping after the synchronising reply was queued after everything before it.
    """
    await socket.send({"type": "pong"})
    await sync(socket, "settled")
    await socket.recv_type("ping")
    await socket.send({"type": "pong"})
    await sync(socket, "acknowledged")


async def resumed_replay(socket, connect, channel: str) -> list:
    """Resume the socket's session without `positions` on a new socket: the data replayed on `channel`."""
    access, _ = await sync_to_async(make_tokens)(socket.user)
    again = await connect()
    welcome = await again.request({"type": "auth", "id": 1, "token": access, "resume": socket.welcome["session"]})
    assert welcome["resumed"] is True, welcome
    frame = await again.recv_type("subscribed")
    assert frame["channel"] == channel and frame["recovered"] is True, frame
    return [publication["data"] for publication in frame["publications"]]


async def drop(socket) -> None:
    """The connection is lost (no close frame): code 1006, resumable."""
    await socket.communicator.disconnect(code=1006)


async def test_a_drop_replays_what_no_pong_acknowledged(backend, login, connect):
    """Delivered is not received: without a pong, the replay starts where the subscription started."""
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:ack"})
    for n in (1, 2):
        await publish("public:ack", n)
    assert [(await ann.recv_type("message"))["data"] for _ in range(2)] == [1, 2]
    await drop(ann)
    await publish("public:ack", 3)
    assert await resumed_replay(ann, connect, "public:ack") == [1, 2, 3]


@override_realtime(HEARTBEAT)
async def test_a_pong_acknowledges_what_was_sent_before_its_ping(backend, login, connect):
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:ack"})
    await publish("public:ack", 1)
    assert (await ann.recv_type("message"))["data"] == 1
    await acknowledge(ann)
    await publish("public:ack", 2)
    assert (await ann.recv_type("message"))["data"] == 2  # delivered, not acknowledged
    await drop(ann)
    await publish("public:ack", 3)
    assert await resumed_replay(ann, connect, "public:ack") == [2, 3]


@override_realtime(HEARTBEAT)
async def test_a_late_pong_acknowledges_only_the_oldest_unanswered_ping(backend, login, connect):
    """A pong that comes after the next ping was queued may answer the earlier one: it acknowledges
    no more than what preceded that one (a slow client's round trip may exceed the heartbeat)."""
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:ack"})
    await publish("public:ack", 1)
    assert (await ann.recv_type("message"))["data"] == 1
    await acknowledge(ann)
    await ann.recv_type("ping")  # queued after 1, left unanswered for now
    await publish("public:ack", 2)
    assert (await ann.recv_type("message"))["data"] == 2
    await ann.recv_type("ping")  # queued after 2
    await ann.send({"type": "pong"})  # for either ping, as far as the server can tell
    await sync(ann, "late")
    await drop(ann)
    assert await resumed_replay(ann, connect, "public:ack") == [2]


async def test_a_recovering_subscription_starts_where_its_replay_began(backend, login, connect):
    """Subscribed with `recover`: until a pong, the record holds the position its replay began after."""
    ann = await login("ann")
    first = await publish("public:ack", 1)
    for n in (2, 3):
        await publish("public:ack", n)
    reply = await ann.request(
        {"type": "subscribe", "id": 1, "channel": "public:ack", "recover": {"epoch": first.epoch, "offset": 1}}
    )
    assert [p["data"] for p in reply["publications"]] == [2, 3]
    await drop(ann)
    assert await resumed_replay(ann, connect, "public:ack") == [2, 3]


@override_realtime(HEARTBEAT)
async def test_the_beat_records_the_acknowledged_positions(backend, login, connect):
    """A live session taken over (its process killed, or its connection a zombie) replays from what its
    beat recorded: the acknowledged positions, not what was only written to the socket."""
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:beat"})
    await publish("public:beat", 1)
    assert (await ann.recv_type("message"))["data"] == 1
    await acknowledge(ann)
    await publish("public:beat", 2)
    assert (await ann.recv_type("message"))["data"] == 2
    await resume.touch_local()  # what the node's beat does every NODE_HEARTBEAT
    assert await resumed_replay(ann, connect, "public:beat") == [2]
    await ann.expect_disconnect(4509)


async def test_a_server_close_records_the_acknowledged_positions_too(backend, login, connect):
    """1001 at a shutdown (and any close the server begins): the ASGI server reports the close without
    saying whether the client got what was queued before it, so nothing more counts as received."""
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:bye"})
    await publish("public:bye", 1)
    assert (await ann.recv_type("message"))["data"] == 1
    assert say_going_away() >= 1
    await ann.expect_disconnect(1001)
    await ann.close()
    await publish("public:bye", 2)
    assert await resumed_replay(ann, connect, "public:bye") == [1, 2]
