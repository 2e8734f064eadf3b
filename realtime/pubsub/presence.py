"""Presence: who is on a channel, and `join`/`leave` pushes on every process.

Each process keeps the presence entries of its own sockets in `local()` and
extends them every NODE_HEARTBEAT (`touch_local`, called by the node's beat), so
the entries of a process that died lapse after `ttl()` seconds. A socket that
drops keeps its entry for PRESENCE_GRACE seconds: coming back (resuming) within
it causes neither `leave` nor `join`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from realtime.engine import PresenceChange, get_engine
from realtime.pubsub import hub as fanout
from realtime.support.conf import realtime_settings
from realtime.support.state import current

logger = logging.getLogger(__name__)

def local() -> dict[str, set[str]]:
    """channel -> sessions of this process present on it (a part of the process's Node)."""
    return current().part((__name__, "local"), dict)


def ttl() -> float:
    """How long an entry lives without its process extending it."""
    return 3 * realtime_settings.NODE_HEARTBEAT


async def announce(channel: str, change: PresenceChange | None) -> None:
    """Push `join`/`leave` for a change to every subscriber of the channel, on every process."""
    if change is not None:
        await fanout.announce(channel, change)


async def add(channel: str, session: str, user: dict[str, Any]) -> PresenceChange:
    """A socket subscribed: mark it present (on failure, this process keeps nothing: a stored entry lapses)."""
    local().setdefault(channel, set()).add(session)
    try:
        return await get_engine().presence_add(channel, session, user, ttl=ttl())
    except BaseException:
        _forget(channel, session)  # or the beat would keep extending an entry of a socket that is not subscribed
        raise


async def remove(channel: str, session: str) -> PresenceChange:
    """A socket unsubscribed: remove it now."""
    _forget(channel, session)
    return await get_engine().presence_remove(channel, session)


async def drop(channel: str, session: str) -> None:
    """A socket went away: keep its entry for PRESENCE_GRACE, then prune and announce who left."""
    _forget(channel, session)
    grace = realtime_settings.PRESENCE_GRACE
    await get_engine().presence_expire(channel, session, after=grace)
    asyncio.get_running_loop().call_later(grace + 0.05, _schedule_prune, channel)


def _forget(channel: str, session: str) -> None:
    sessions = local().get(channel)
    if sessions is not None:
        sessions.discard(session)
        if not sessions:
            del local()[channel]


def _schedule_prune(channel: str) -> None:
    asyncio.ensure_future(prune(channel))


async def prune(channel: str) -> None:
    """Drop lapsed entries of a channel and announce who left."""
    try:
        await announce(channel, await get_engine().presence_prune(channel))
    except Exception as exc:  # presence is advisory; the next prune catches up
        logger.warning("presence prune of %s failed: %r", channel, exc)


async def announce_quietly(channel: str, change: PresenceChange) -> None:
    """`announce`, logging a failure instead of raising (a reply is waiting on the caller)."""
    try:
        await announce(channel, change)
    except Exception as exc:
        logger.warning("presence announce on %s failed: %r", channel, exc)


async def touch_local() -> None:
    """Extend this process's entries and prune the channels they are on (the node's beat)."""
    if not local():
        return
    snapshot = {channel: list(sessions) for channel, sessions in local().items()}
    await get_engine().presence_touch(snapshot, ttl=ttl())
    for channel in snapshot:
        await prune(channel)
