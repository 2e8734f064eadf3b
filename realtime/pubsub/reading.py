"""Reading history and presence: shared by the socket handlers and the HTTP API."""

from __future__ import annotations

from typing import Any

from realtime.core.errors import PermissionDenied
from realtime.core.protocol import Position
from realtime.engine import Slice, get_engine
from realtime.namespaces import Namespace
from realtime.pubsub import presence
from realtime.support.conf import realtime_settings
from realtime.support.services import backing_service


async def read_history(channel: str, namespace: Namespace, since: Position | None, limit: int | None) -> Slice:
    """Publications after `since` (the oldest `limit` of them), or the newest `limit` (default: all kept).

    Of those, only what fits in MAX_REPLY_BYTES: after `since` the oldest (the client pages
    forward from the last offset it got), else the newest.
    """
    engine, ttl, max_bytes = get_engine(), namespace.history_ttl, realtime_settings.MAX_REPLY_BYTES
    if since is not None:
        return await engine.since(channel, since.epoch, since.offset, ttl=ttl, limit=limit, max_bytes=max_bytes)
    return await engine.latest(channel, limit or namespace.history_size, ttl=ttl, max_bytes=max_bytes)


async def read_presence(channel: str, namespace: Namespace, request_id=None) -> list[dict[str, Any]]:
    """The channel's members, one entry per user; `permission_denied` where the namespace has no presence."""
    if not namespace.presence:
        raise PermissionDenied(f"Namespace {namespace.name!r} has no presence.", request_id=request_id)
    async with backing_service(request_id):
        # Lapsed entries (a dead process, a drop past its grace) are pruned in the same
        # step, and their `leave` announced: a read must not be what hides a departure.
        left, members = await get_engine().presence_snapshot(channel)
    await presence.announce_quietly(channel, left)
    return members
