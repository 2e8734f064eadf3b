"""The engine behind channels: `get_engine()` picks the backend from the settings.

`REDIS_URL` set: `RedisEngine` (shared by every process; one client per event
loop, as redis-py's asyncio clients belong to the loop that made them). Unset:
`MemoryEngine`, one per process (the embedded default).
"""

from __future__ import annotations

import asyncio
import weakref

from django.conf import settings
from django.core.signals import setting_changed

from realtime.core.frames import publication_parts
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
    "publication_parts",
]

_memory: MemoryEngine | None = None
_redis: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_engine() -> Engine:
    """The engine for the running event loop."""
    global _memory
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        if _memory is None:
            _memory = MemoryEngine()
        return _memory
    loop = asyncio.get_running_loop()
    engine = _redis.get(loop)
    if engine is None:
        from realtime.engine.redis import RedisEngine

        engine = _redis[loop] = RedisEngine(url, settings.REDIS_PREFIX)
    return engine


def reset_engines(**kwargs) -> None:
    """Forget the engines (the settings changed, or a test wants a clean slate)."""
    global _memory
    _memory = None
    _redis.clear()


def _on_setting_changed(*, setting: str, **kwargs) -> None:
    if setting in ("REDIS_URL", "REDIS_PREFIX"):
        reset_engines()


setting_changed.connect(_on_setting_changed)
