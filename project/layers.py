"""The channels-redis layer configuration, shared by the settings and the tests."""

from __future__ import annotations

import redis.asyncio as aioredis
from channels_redis.core import RedisChannelLayer

from realtime.redis_pool import bounded_pool

# channels-redis waits for messages with a blocking BZPOPMIN of 5 s; redis-py 8
# reads with a 5 s socket timeout by default, so an idle socket's consumer would
# die of a TimeoutError every few seconds. The socket timeout must outlast it.
SOCKET_TIMEOUT = 15


FLAVOURS = ("core", "pubsub")

class BoundedRedisChannelLayer(RedisChannelLayer):
    """channels-redis's core layer on `bounded_pool`s: under a connection storm callers queue, none fails."""

    def create_pool(self, index: int) -> aioredis.BlockingConnectionPool:
        host = dict(self.hosts[index])
        return bounded_pool(host.pop("address"), **host)


def redis_channel_layer(
    url: str, prefix: str, *, capacity: int = 1000, expiry: int = 60, flavour: str = "core"
) -> dict:
    """`CHANNEL_LAYERS` for channels-redis on `url`, with keys under `prefix`.

    `flavour` "core" is channels-redis's list-based layer (messages wait in Redis up
    to `capacity`/`expiry`); "pubsub" its Redis pub/sub layer (nothing is stored; a
    consumer that is not listening misses the message, which history then fills).
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"CHANNEL_LAYER_FLAVOUR must be one of {', '.join(FLAVOURS)}, not {flavour!r}")
    host = {"address": url, "socket_timeout": SOCKET_TIMEOUT, "socket_keepalive": True}
    if flavour == "pubsub":
        return {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [host], "prefix": f"{prefix}:asgi"},
            }
        }
    return {
        "default": {
            "BACKEND": "project.layers.BoundedRedisChannelLayer",
            "CONFIG": {
                "hosts": [host],
                "prefix": f"{prefix}:asgi",
                "capacity": capacity,
                "expiry": expiry,
            },
        }
    }
