"""Layer 2, the engine behind channels: `get_engine()` picks the backend from the settings.

`REALTIME["REDIS_URL"]` set: `RedisEngine` (shared by every process; one client per event
loop, as redis-py's asyncio clients belong to the loop that made them). Unset:
`MemoryEngine`, one per process (the embedded default). Either is a part of the process's
Node (`realtime.support.state`).
"""

from __future__ import annotations

from realtime.engine.base import (
    Engine,
    OverQuota,
    Position,
    PresenceChange,
    Published,
    Quota,
    SessionWrite,
    Slice,
    TakenSession,
)
from realtime.engine.memory import MemoryEngine
from realtime.support.conf import realtime_settings
from realtime.support.state import current

__all__ = [
    "Engine",
    "OverQuota",
    "Position",
    "PresenceChange",
    "Published",
    "Quota",
    "SessionWrite",
    "Slice",
    "TakenSession",
    "get_engine",
]

def get_engine() -> Engine:
    """The engine for the running event loop: the Node's, for the current REDIS_URL and REDIS_PREFIX."""
    url = realtime_settings.REDIS_URL
    if not url:
        return current().part(MemoryEngine)
    prefix = realtime_settings.REDIS_PREFIX
    return current().loop_part(("engine", url, prefix), lambda: _redis_engine(url, prefix))


def _redis_engine(url: str, prefix: str) -> Engine:
    from realtime.core.redis_urls import CLUSTER_SCHEME

    if url.startswith(CLUSTER_SCHEME):
        from realtime.engine.cluster import ClusterEngine  # redis-py's cluster client: only for a Cluster

        return ClusterEngine(url, prefix)
    from realtime.engine.redis import RedisEngine  # redis-py's asyncio client: only when Redis is configured

    return RedisEngine(url, prefix)
