"""Faults on purpose: the fan-out and the channel layer are transports, not stores.

`lossy_fanout` and `echoing_fanout` make this process's hub (realtime.pubsub.hub) lose or
repeat publications as they arrive from the engine (the real memory engine or Redis):
what a Redis pub/sub reconnect or a repeated delivery would do. Apply them before the
sockets of the test subscribe. `break_presence` makes a real Redis fail presence alone, and
`lose_history` makes an engine lose a channel's stream as a Redis flush or restart does.
"""

import contextlib
from unittest import mock

from realtime.core.frames import PUBLICATION_EVENT
from realtime.engine import get_engine
from realtime.engine.memory import MemoryEngine
from realtime.pubsub.hub import Hub


def _offset(event: str) -> int | None:
    return int(event[1:].split(" ", 2)[1]) if event[0] == PUBLICATION_EVENT else None


@contextlib.contextmanager
def lossy_fanout(drop: set[int]):
    """The hub never hears the publications whose offset is in `drop`."""
    receive = Hub.receive

    def lossy(hub, channel, event):
        if _offset(event) not in drop:
            receive(hub, channel, event)

    with mock.patch.object(Hub, "receive", lossy):
        yield


@contextlib.contextmanager
def echoing_fanout():
    """The hub hears every publication twice."""
    receive = Hub.receive

    def echoing(hub, channel, event):
        receive(hub, channel, event)
        if _offset(event) is not None:
            receive(hub, channel, event)

    with mock.patch.object(Hub, "receive", echoing):
        yield


async def break_presence(channel: str):
    """A real Redis failure of presence alone: the channel's presence set becomes a string (WRONGTYPE)."""
    engine = get_engine()
    await engine.redis.set(engine.key("pz", channel), "not a sorted set")
    return engine


async def lose_history(engine, channel: str) -> None:
    """What a Redis flush or restart does to a channel's stored stream (its next use mints a new epoch)."""
    if isinstance(engine, MemoryEngine):
        engine.forget(channel)
    else:
        await engine.redis.delete(engine.key("m", channel), engine.key("h", channel))
