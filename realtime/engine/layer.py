"""The app's own channel layer: control events to sockets (disconnect, channel ends, session takeovers).

Made from `REALTIME["REDIS_URL"]` (channels-redis on it, keys under `<REDIS_PREFIX>:asgi`), or in
memory without Redis: the project's `CHANNEL_LAYERS`, if it has one, stays its own consumers'
(INTEGRATION.md section 2). `make_layer(values)` builds one from the settings' values; the process
holds one (`realtime.runtime`'s node), and tests may make their own.
"""

from __future__ import annotations

import asyncio
import logging
import random

import redis.asyncio as aioredis
from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from django.utils.module_loading import import_string

from realtime.engine.pool import bounded_pool
from realtime.support.conf import realtime_settings
from realtime.support.state import current

# channels-redis waits for messages with a blocking BZPOPMIN of 5 s; redis-py 8
# reads with a 5 s socket timeout by default, so an idle socket's consumer would
# die of a TimeoutError every few seconds. The socket timeout must outlast it.
SOCKET_TIMEOUT = 15


FLAVOURS = ("core", "pubsub")
LAYER_SETTINGS = ("REDIS_URL", "REDIS_PREFIX", "CHANNEL_LAYER_FLAVOUR", "CHANNEL_LAYER_CAPACITY")

# A consumer's receive while Redis is away: wait and try again, from this delay doubling to the next.
RECEIVE_RETRY = (0.1, 5.0)

logger = logging.getLogger(__name__)


class BoundedRedisChannelLayer(RedisChannelLayer):
    """channels-redis's core layer on `bounded_pool`s: under a connection storm callers queue, none fails.

    And a consumer's `receive` outlives a Redis outage: channels-redis raises the connection
    error out of `receive`, which ends every consumer of the process with a traceback (1011)
    at the first blip. Here it waits (with jitter) and tries again, so sockets stay up and
    their control events flow again once Redis is back.
    """

    outage = False  # one log line per outage (set on the instance: the Node holds one layer)

    def create_pool(self, index: int) -> aioredis.BlockingConnectionPool:
        host = dict(self.hosts[index])
        return bounded_pool(host.pop("address"), **host)

    async def receive(self, channel: str) -> dict:
        delay, longest = RECEIVE_RETRY
        while True:
            try:
                message = await super().receive(channel)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                if not self.outage:
                    self.outage = True
                    logger.warning("channel layer: Redis is unreachable (%r); receivers wait for it", exc)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(longest, delay * 2)
                continue
            if self.outage:
                self.outage = False
                logger.info("channel layer: Redis is back")
            return message


def make_layer(values: dict) -> BaseChannelLayer:
    """A channel layer for the REALTIME settings' `values`: on Redis when REDIS_URL is set, else in memory."""
    url = values["REDIS_URL"]
    if not url:
        return InMemoryChannelLayer(capacity=values["CHANNEL_LAYER_CAPACITY"])
    config = redis_channel_layer(
        url, values["REDIS_PREFIX"], capacity=values["CHANNEL_LAYER_CAPACITY"], flavour=values["CHANNEL_LAYER_FLAVOUR"]
    )["default"]
    return import_string(config["BACKEND"])(**config["CONFIG"])


def layer_key() -> tuple:
    """The Node's key of the channel layer for the current settings."""
    values = realtime_settings.values
    return ("channel-layer", *(values[key] for key in LAYER_SETTINGS))


def channel_layer() -> BaseChannelLayer:
    """The app's channel layer: a part of the process's Node, made for the current settings."""
    values = realtime_settings.values
    return current().part(layer_key(), lambda: make_layer(values))


def redis_channel_layer(
    url: str, prefix: str, *, capacity: int = 1000, expiry: int = 60, flavour: str = "core"
) -> dict:
    """A `CHANNEL_LAYERS` entry for channels-redis on `url`, with keys under `prefix`.

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
            "BACKEND": "realtime.engine.layer.BoundedRedisChannelLayer",
            "CONFIG": {
                "hosts": [host],
                "prefix": f"{prefix}:asgi",
                "capacity": capacity,
                "expiry": expiry,
            },
        }
    }
