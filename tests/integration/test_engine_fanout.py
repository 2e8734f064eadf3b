"""The engine's fan-out contract, on both backends: what a process's listener hears, and when.

And, on Redis, what happens when the listener's own connection breaks: it connects
again, subscribes every channel again, and says so per channel (so subscriptions heal
from history), while a subscribe during the outage fails at once (`unavailable`).
"""

import asyncio
import json

import pytest
import redis

from realtime.core.frames import PRESENCE_EVENT, publication_event, publication_parts
from realtime.engine.redis import RedisEngine

pytestmark = pytest.mark.integration


class Heard:
    """A listener's callbacks: events in arrival order, channels resubscribed; awaitable."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.resubscribed: list[str] = []
        self.changed = asyncio.Event()

    def on_event(self, channel: str, event: str) -> None:
        self.events.append((channel, event))
        self.changed.set()

    def on_resubscribed(self, channel: str) -> None:
        self.resubscribed.append(channel)
        self.changed.set()

    async def until(self, done) -> None:
        async with asyncio.timeout(10):
            while not done():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def engine(bare_engine):
    """This file drives an engine directly, without sockets (both backends)."""
    return bare_engine


async def publish(engine, channel, data):
    head, tail = publication_parts(channel, data, None, 1234)
    return await engine.publish(channel, head, tail, size=10, ttl=60)


async def test_a_listener_hears_each_publication_once_in_offset_order_with_its_frame(engine):
    heard = Heard()
    listener = engine.listener(heard.on_event, heard.on_resubscribed)
    await listener.subscribe("public:a")
    published = [await publish(engine, "public:a", n) for n in range(5)]
    await publish(engine, "public:other", "not subscribed")
    await heard.until(lambda: len(heard.events) >= 5)
    assert heard.events == [("public:a", publication_event(p.epoch, p.offset, 1234, p.text)) for p in published]
    epoch, offset, ts, frame = heard.events[0][1][1:].split(" ", 3)
    assert (epoch, int(offset), int(ts)) == (published[0].epoch, 1, 1234)
    assert json.loads(frame) == {"type": "message", **json.loads(published[0].text)}
    await listener.close()


async def test_broadcast_events_reach_the_listeners_of_the_channel_only(engine):
    heard, other = Heard(), Heard()
    one = engine.listener(heard.on_event, heard.on_resubscribed)
    two = engine.listener(other.on_event, other.on_resubscribed)
    await one.subscribe("public:p")
    await two.subscribe("public:q")
    await engine.broadcast("public:p", PRESENCE_EVENT + '{"joined":[],"left":[]}')
    await engine.broadcast("public:q", PRESENCE_EVENT + "{}")
    await heard.until(lambda: heard.events)
    await other.until(lambda: other.events)
    assert heard.events == [("public:p", PRESENCE_EVENT + '{"joined":[],"left":[]}')]
    assert other.events == [("public:q", PRESENCE_EVENT + "{}")]
    await one.close()
    await two.close()


async def test_after_unsubscribe_nothing_more_is_heard(engine):
    heard = Heard()
    listener = engine.listener(heard.on_event, heard.on_resubscribed)
    await listener.subscribe("public:u")
    await listener.subscribe("public:marker")
    await publish(engine, "public:u", 1)
    await heard.until(lambda: heard.events)
    listener.unsubscribe("public:u")
    await publish(engine, "public:u", 2)
    await publish(engine, "public:marker", "after")  # heard after anything sent before it
    await heard.until(lambda: heard.events[-1][0] == "public:marker")
    assert [channel for channel, _ in heard.events] == ["public:u", "public:marker"]
    await listener.close()


async def kill_listener_connection(engine: RedisEngine) -> int:
    """Kill this engine's fan-out connection on the Redis server (as a restart or a network cut would)."""
    name = f"{engine.prefix}:fanout"
    killed = 0
    for client in await engine.redis.client_list():
        if client.get("name") == name:
            await engine.redis.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


async def test_a_broken_listener_connection_subscribes_again_and_says_so(redis_url, redis_prefix):
    engine = RedisEngine(redis_url, redis_prefix)
    heard = Heard()
    listener = engine.listener(heard.on_event, heard.on_resubscribed)
    await listener.subscribe("public:r1")
    await listener.subscribe("public:r2")
    assert await kill_listener_connection(engine) == 1
    await heard.until(lambda: sorted(heard.resubscribed) == ["public:r1", "public:r2"])
    published = await publish(engine, "public:r1", "after the reconnect")
    await heard.until(lambda: heard.events)
    assert heard.events == [("public:r1", publication_event(published.epoch, 1, 1234, published.text))]
    await engine.close()


async def test_a_subscribe_while_redis_is_unreachable_fails_at_once():
    engine = RedisEngine("redis://127.0.0.1:1/0", "unreachable")
    heard = Heard()
    listener = engine.listener(heard.on_event, heard.on_resubscribed)
    for _ in range(2):  # the first attempt to connect, then while retrying
        with pytest.raises(redis.ConnectionError):
            await listener.subscribe("public:x")
    await engine.close()


async def test_the_same_prefix_on_another_database_hears_nothing(redis_url, redis_prefix):
    """Pub/sub is server-wide in Redis: two deployments on databases 0 and 1 must not cross."""
    other_url = redis_url.rsplit("/", 1)[0] + "/" + ("1" if not redis_url.endswith("/1") else "2")
    mine, other = RedisEngine(redis_url, redis_prefix), RedisEngine(other_url, redis_prefix)
    heard, overheard = Heard(), Heard()
    listener = mine.listener(heard.on_event, heard.on_resubscribed)
    eavesdropper = other.listener(overheard.on_event, overheard.on_resubscribed)
    await listener.subscribe("public:db")
    await eavesdropper.subscribe("public:db")
    await eavesdropper.subscribe("public:marker")
    await publish(mine, "public:db", "mine")
    await publish(other, "public:marker", "after")  # the other side hears this after anything sent before
    await heard.until(lambda: heard.events)
    await overheard.until(lambda: overheard.events)
    assert [channel for channel, _ in heard.events] == ["public:db"]
    assert [channel for channel, _ in overheard.events] == ["public:marker"]
    await mine.close()
    await other.close()


class Frames:
    """A hub target (`realtime.pubsub.hub.Target`) that keeps each live publication's frame and byte length."""

    def __init__(self) -> None:
        self.got: list[tuple[str, int]] = []
        self.heard = asyncio.Event()

    def on_publication(self, channel: str, epoch: str, offset: int, frame: str, size: int) -> bool:
        self.got.append((frame, size))
        self.heard.set()
        return True

    def on_presence(self, channel: str, frames: list[str], count: int) -> None:
        pass

    def on_resubscribed(self, channel: str) -> None:
        pass

    def on_stored(self, channel: str, position) -> None:
        pass


async def test_the_hub_hands_every_subscriber_one_frame_and_its_utf8_length(engine):
    """The send queues count UTF-8 bytes (SEND_QUEUE_BYTES): the hub measures a publication's frame once
    and hands the same string and length to each subscriber, so no subscriber encodes it again."""
    from realtime.pubsub.hub import Hub

    hub = Hub(engine)
    targets = [Frames(), Frames()]
    for target in targets:
        await hub.add("public:wide", target)
    await publish(engine, "public:wide", "\U0001f600" * 100)
    async with asyncio.timeout(10):
        for target in targets:
            await target.heard.wait()
    ((frame, size),) = targets[0].got
    assert targets[1].got[0][0] is frame and targets[1].got[0][1] == size
    assert size == len(frame.encode()) == len(frame) + 300  # bytes, not characters: 100 of 4 bytes
    await hub.close()
