"""The channels-redis layer configuration, shared by the settings and the tests."""

from __future__ import annotations

# channels-redis waits for messages with a blocking BZPOPMIN of 5 s; redis-py 8
# reads with a 5 s socket timeout by default, so an idle socket's consumer would
# die of a TimeoutError every few seconds. The socket timeout must outlast it.
SOCKET_TIMEOUT = 15


def redis_channel_layer(url: str, prefix: str, *, capacity: int = 1000, expiry: int = 60) -> dict:
    """`CHANNEL_LAYERS` for channels-redis on `url`, with keys under `prefix`."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": url, "socket_timeout": SOCKET_TIMEOUT, "socket_keepalive": True}],
                "prefix": f"{prefix}:asgi",
                "capacity": capacity,
                "expiry": expiry,
            },
        }
    }
