"""A publication the fan-out lost with nothing after it is still delivered, within a bounded time.

A gap is normally noticed when a later publication arrives with a skipped offset; when the
lost one is the channel's last, nothing follows to reveal it. Every DELIVERY_CHECK seconds
the process's hub reads the stored position of each channel it serves, in one batch for all
of them, and a subscription behind it heals from history (as after a listener reconnect).
On both engines (memory, Redis with either channel-layer flavour), through real sockets.
"""

import pytest

from realtime.engine import Position, get_engine
from realtime.engine.redis import RedisEngine
from realtime.pubsub.publishing import publish
from tests.conftest import override_realtime
from tests.integration.lossy import lossy_fanout
from tests.integration.test_engine_contract import engine, lose_history
from tests.integration.test_engine_contract import publish as engine_publish

__all__ = ["engine"]  # the contract suite's fixture: each engine test below runs on both backends

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST_CHECK = {"DELIVERY_CHECK": 0.1}


@override_realtime(FAST_CHECK)
async def test_a_dropped_last_publication_reaches_the_subscriber(backend, login):
    with lossy_fanout({3}):  # (the hub's listener takes its callback at the first subscribe)
        ann = await login()
        await ann.request({"type": "subscribe", "id": 1, "channel": "public:quiet"})
        for n in (1, 2, 3):
            await publish("public:quiet", n)
        received = [await ann.recv_type("message") for _ in range(3)]
    assert [(m["offset"], m["data"]) for m in received] == [(1, 1), (2, 2), (3, 3)]
    assert await ann.request({"type": "ping", "id": 2}) == {"type": "pong", "id": 2}  # and nothing twice


@override_realtime(FAST_CHECK)
async def test_every_subscriber_of_every_channel_heals_from_one_check(backend, login):
    channels = ["public:one", "public:two"]
    with lossy_fanout({1, 2}):  # every publication of both channels: only the check can reveal them
        sockets = [await login(name) for name in ("ann", "bob", "cid")]
        for socket in sockets:
            for index, channel in enumerate(channels):
                reply = await socket.request({"type": "subscribe", "id": index, "channel": channel})
                assert reply["type"] == "subscribed", reply
        for channel in channels:
            for n in (1, 2):
                await publish(channel, f"{channel} {n}")
        for socket in sockets:
            received = [await socket.recv_type("message") for _ in range(4)]
            by_channel = {channel: [m["data"] for m in received if m["channel"] == channel] for channel in channels}
            assert by_channel == {channel: [f"{channel} 1", f"{channel} 2"] for channel in channels}


@override_realtime(FAST_CHECK)
async def test_a_dropped_last_publication_after_a_lost_history_ends_the_subscription(backend, login):
    """The check also notices a quiet channel whose stored stream is gone: the client must recover."""
    with lossy_fanout({1}):  # the first publication of each epoch
        ann = await login()
        await ann.request({"type": "subscribe", "id": 1, "channel": "public:gone"})
        await publish("public:gone", 1)
        assert (await ann.recv_type("message"))["offset"] == 1
        await lose_history(get_engine(), "public:gone")
        await publish("public:gone", "in a new epoch, lost on the way")
        ended = await ann.recv_type("unsubscribed")
    assert ended == {"type": "unsubscribed", "channel": "public:gone", "reason": "insufficient_state"}


# ---------------------------------------------------------------- the engine's batched read


async def test_positions_reads_every_channel_at_once_and_creates_nothing(engine):
    first = await engine_publish(engine, "public:p", 1)
    second = await engine_publish(engine, "public:p", 2)
    subscribed = await engine.position("public:empty", ttl=60)
    stored = await engine.positions(["public:p", "public:empty", "public:never"])
    assert stored == {
        "public:p": Position(first.epoch, second.offset),
        "public:empty": Position(subscribed.epoch, 0),
        "public:never": None,
    }
    assert await engine.positions([]) == {}
    assert (await engine.positions(["public:never"]))["public:never"] is None  # still nothing stored


async def test_positions_does_not_vouch_for_a_stream_another_redis_instance_stamped(redis_url, redis_prefix):
    """A hash from another server instance (a snapshot, a lagging replica) is no position."""
    engine = RedisEngine(redis_url, redis_prefix)
    published = await engine_publish(engine, "public:p", 1)
    await engine.redis.hset(engine.key("m", "public:p"), "server", "another-instance")
    assert await engine.positions(["public:p"]) == {"public:p": None}
    again = await engine_publish(engine, "public:p", 2)
    assert again.epoch != published.epoch and again.offset == 1
    assert await engine.positions(["public:p"]) == {"public:p": Position(again.epoch, 1)}
    await engine.close()
