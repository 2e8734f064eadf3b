"""Redis connection pools that wait instead of failing (no Django import: the settings use it too)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError  # noqa: A004 - redis-py's, not the builtins

# Redis connections per pool (a process has one per channel-layer host and one for the engine),
# and how long a caller waits for one when all are busy. redis-py's default pool raises
# MaxConnectionsError at once when its connections are in use: a thousand sockets closing
# together (each leaving its groups) died in on_disconnect that way. A bounded pool that waits
# turns the storm into a short queue.
POOL_SIZE = 50
POOL_WAIT = 30.0


def bounded_pool(url: str, **options) -> aioredis.BlockingConnectionPool:
    """A redis-py pool of POOL_SIZE connections on which callers wait (up to POOL_WAIT s) for a free one.

    A command that meets a broken connection is tried again on a fresh one (twice, after
    50 and 100 ms): after a Redis restart every pooled connection is dead, and without this
    the first command on each of them failed (a history read, a subscribe) although Redis
    was back.
    """
    options.setdefault("max_connections", POOL_SIZE)
    options.setdefault("timeout", POOL_WAIT)
    options.setdefault("retry", Retry(ExponentialBackoff(cap=0.2, base=0.05), 2))
    options.setdefault("retry_on_error", [ConnectionError, TimeoutError])
    return aioredis.BlockingConnectionPool.from_url(url, **options)
