"""In-process fan-out through real sockets: one engine subscription per process and channel.

Many sockets of one process on one channel share one Redis pub/sub subscription (the
publication crosses Redis once per process, not once per subscriber); the last one out
ends it; a subscription broken under them heals from history; presence pushes travel
the same way (tested with presence, in test_socket_channels.py).
"""

import asyncio

import pytest

from realtime.engine import get_engine
from realtime.pubsub.hub import get_hub
from realtime.pubsub.publishing import publish
from tests.integration.test_engine_fanout import kill_listener_connection

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def subscribers(channel: str) -> int:
    """How many Redis connections are subscribed to the channel's fan-out events."""
    engine = get_engine()
    ((_, count),) = await engine.redis.pubsub_numsub(engine.fanout_key(channel))
    return count


async def until(condition) -> None:
    async with asyncio.timeout(10):
        while not await condition():
            await asyncio.sleep(0.02)  # polls Redis's own count: there is no event for it


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_sockets_of_one_process_share_one_subscription_per_channel(backend, login):
    sockets = [await login(f"user{n}") for n in range(5)]
    for socket in sockets:
        reply = await socket.request({"type": "subscribe", "id": 1, "channel": "public:shared"})
        assert reply["type"] == "subscribed"
    assert await subscribers("public:shared") == 1
    assert len(get_hub().channels["public:shared"].targets) == 5
    published = await publish("public:shared", "once")
    for socket in sockets:
        message = await socket.recv_type("message")
        assert (message["offset"], message["data"]) == (published.offset, "once")
    for socket in sockets[:-1]:
        await socket.request({"type": "unsubscribe", "id": 2, "channel": "public:shared"})
    assert await subscribers("public:shared") == 1  # one socket still there
    await sockets[-1].request({"type": "unsubscribe", "id": 2, "channel": "public:shared"})
    await until(lambda: _none_left("public:shared"))
    assert "public:shared" not in get_hub().channels


async def _none_left(channel: str) -> bool:
    return await subscribers(channel) == 0


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_publications_lost_while_the_process_subscription_was_broken_are_replayed(backend, login):
    ann, bob = await login("ann"), await login("bob")
    for socket in (ann, bob):
        await socket.request({"type": "subscribe", "id": 1, "channel": "public:healed"})
    await publish("public:healed", 1)
    assert (await ann.recv_type("message"))["offset"] == (await bob.recv_type("message"))["offset"] == 1
    engine = get_engine()
    listener = get_hub().listener
    assert await kill_listener_connection(engine) == 1
    # Published while this process does not listen (Redis dropped its subscriber): only history has them.
    for n in (2, 3):
        await publish("public:healed", n)
    for socket in (ann, bob):
        assert [(await socket.recv_type("message"))["offset"] for _ in range(2)] == [2, 3]
    await until(lambda: _connected(listener))
    await publish("public:healed", 4)
    assert (await ann.recv_type("message"))["offset"] == (await bob.recv_type("message"))["offset"] == 4


async def _connected(listener) -> bool:
    return listener.connected.is_set()
