"""Publishing, shared by sockets, the HTTP API, management commands and your own code.

    from realtime.publish import publish, publish_sync
    position = publish_sync("room:kitchen", {"text": "dinner!"})   # from a view, a signal, a task
    position = await publish("user:7", {"unread": 3})              # from async code

The publication gets the channel's next offset and goes into history, and its
`message` frame, serialised once, goes to every process that serves the channel
(atomically, in the engine); each process hands it to its subscribers
(`realtime.pubsub.hub`).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from asgiref.sync import async_to_sync

from realtime.core.errors import RateLimited, TooLarge
from realtime.core.frames import now_ms, publication_parts
from realtime.engine import OverQuota, Published, Quota, get_engine
from realtime.namespaces import resolve
from realtime.support import metrics
from realtime.support.conf import realtime_settings
from realtime.support.state import current

logger = logging.getLogger(__name__)


def check_data_size(data: Any) -> None:
    """Refuse data whose JSON is over MAX_FRAME_BYTES (`too_large`)."""
    limit = realtime_settings.MAX_FRAME_BYTES
    if len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()) > limit:
        raise TooLarge(f"`data` over {limit} bytes.")


async def publish(channel: str, data: Any, *, user: Any = None, quota: Any = None) -> Published:
    """Publish `data` to `channel` as user id `user` (None: the server); returns its position.

    `user` and `quota` are primary keys of any type (`realtime.core.users`: an integer is a
    JSON number in the publication, a UUID or string a JSON string; a quota is keyed by `str()`).
    Raises `BadRequest`/`UnknownNamespace` for a bad channel. Permissions are the
    caller's business: this is the server side, which may publish anywhere. `quota` is the
    id of the user charged for it (PUBLISH_BYTES_PER_SECOND, one quota per user for all of
    the user's sockets and HTTP requests on every process), counted in bytes as stored; over
    it, `RateLimited` (its `retry_after` in seconds) and nothing is stored.
    """
    namespace, _ = resolve(channel)
    ts = now_ms()
    head, tail = publication_parts(channel, data, user, ts)
    charge = None if quota is None else Quota(str(quota), realtime_settings.PUBLISH_BYTES_PER_SECOND)
    try:
        # Charged, stored and fanned out in one step of the engine (one Redis round trip): every
        # process serving the channel hears it once.
        published = await get_engine().publish(
            channel, head, tail, size=namespace.history_size, ttl=namespace.history_ttl,
            max_bytes=namespace.history_bytes, quota=charge,
        )  # fmt: skip
    except OverQuota as exc:
        refused = RateLimited("Publishing more bytes per second than PUBLISH_BYTES_PER_SECOND allows; not published.")
        refused.retry_after = math.ceil(exc.wait) or 1  # seconds: when this publication would fit
        raise refused from None
    metrics.published()
    return published


def unheard_warning() -> str | None:
    """Why a publication made in this process may reach nobody, or None.

    Without REDIS_URL the engine is this process's own memory: only the sockets this very
    process serves can hear it, and a process that serves none (a shell, a command, a worker)
    reaches no socket at all. Said once per process (`publish_sync` logs it).
    """
    node = current()
    if node.serving or "unheard" in node.said or realtime_settings.REDIS_URL:
        return None
    node.said.add("unheard")
    return (
        "REDIS_URL is not set: this process is not a server and has no Redis, so its publications "
        "reach no socket (set REDIS_URL to the servers' Redis; `make run` serves with one)."
    )


_publish_from_sync = async_to_sync(publish)


def publish_sync(channel: str, data: Any, *, user: Any = None, quota: Any = None):
    """`publish` from synchronous code (a view, a signal, a task, a shell); returns the position."""
    warning = unheard_warning()
    if warning:
        logger.warning(warning)
    return _publish_from_sync(channel, data, user=user, quota=quota)
