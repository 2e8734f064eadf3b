"""Redis clients on pools that wait instead of failing, for one server or a Sentinel-watched master.

The URL forms are `realtime.core.redis_urls`'s. A Sentinel client looks the master up again at
every new connection, so that after a failover every process follows the new master on its own.
"""

from __future__ import annotations

import redis.asyncio as aioredis
import redis.sentinel
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError  # noqa: A004 - redis-py's, not the builtins

from realtime.core.redis_urls import SENTINEL_SCHEME, parse_sentinel_url

# Redis connections per pool (a process has one per channel-layer host and one for the engine),
# and how long a caller waits for one when all are busy. redis-py's default pool raises
# MaxConnectionsError at once when its connections are in use: a thousand sockets closing
# together (each leaving its groups) died in on_disconnect that way. A bounded pool that waits
# turns the storm into a short queue.
POOL_SIZE = 50
POOL_WAIT = 30.0
SENTINEL_TIMEOUT = 1.0  # seconds a sentinel may take to answer which server is the master


def bounded_pool(url: str, **options) -> aioredis.BlockingConnectionPool:
    """A redis-py pool of POOL_SIZE connections on which callers wait (up to POOL_WAIT s) for a free one.

    A command that meets a broken connection is tried again on a fresh one (twice, after
    50 and 100 ms): after a Redis restart every pooled connection is dead, and without this
    the first command on each of them failed (a history read, a subscribe) although Redis
    was back.
    """
    return aioredis.BlockingConnectionPool.from_url(url, **_pool_options(options))


def _pool_options(options: dict) -> dict:
    options.setdefault("max_connections", POOL_SIZE)
    options.setdefault("timeout", POOL_WAIT)
    options.setdefault("retry", Retry(ExponentialBackoff(cap=0.2, base=0.05), 2))
    options.setdefault("retry_on_error", [ConnectionError, TimeoutError])
    return options


def redis_client(url: str, **options) -> aioredis.Redis:
    """A client for `url` (one server, or a Sentinel-watched master) on a bounded pool (`bounded_pool`)."""
    if url.startswith(SENTINEL_SCHEME):
        spec = parse_sentinel_url(url)
        sentinel = Sentinel(
            spec.sentinels,
            sentinel_kwargs={"password": spec.sentinel_password, "socket_timeout": SENTINEL_TIMEOUT},
        )
        return sentinel.master_for(
            spec.service,
            connection_pool_class=BlockingSentinelPool,
            db=spec.db,
            username=spec.username,
            password=spec.password,
            **_pool_options(options),
        )
    return aioredis.Redis.from_pool(bounded_pool(url, **options))


class SentinelCachePool:
    """A synchronous pool for `url`'s Sentinel-watched master, for Django's RedisCache (`OPTIONS["pool_class"]`:
    it calls `from_url`), which takes `redis://` URLs only."""

    @classmethod
    def from_url(cls, url: str, **options) -> redis.sentinel.SentinelConnectionPool:
        spec = parse_sentinel_url(url)
        sentinel = redis.sentinel.Sentinel(
            spec.sentinels,
            sentinel_kwargs={"password": spec.sentinel_password, "socket_timeout": SENTINEL_TIMEOUT},
        )
        options.update(db=spec.db, username=spec.username, password=spec.password)
        return redis.sentinel.SentinelConnectionPool(spec.service, sentinel, **options)


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """redis-py's pool of a Sentinel-watched master, waiting for a free connection as `bounded_pool` does.

    Each new connection asks the sentinels for the master (a failover is followed on the next one).
    """
