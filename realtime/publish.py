"""Publishing, shared by sockets, the HTTP API, management commands and your own code.

    from realtime.publish import publish, publish_sync
    position = publish_sync("room:kitchen", {"text": "dinner!"})   # from a view, a signal, a task
    position = await publish("user:7", {"unread": 3})              # from async code

The publication gets the channel's next offset and goes into history
(atomically, in the engine), then its `message` frame, serialised once, fans out
through the channel layer to every subscribed socket on every process.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import metrics
from .conf import realtime_settings
from .engine import Published, get_engine, publication_parts
from .engine.base import now_ms
from .exceptions import TooLarge
from .namespaces import resolve

MESSAGE_EVENT = "rt.message"
PRESENCE_EVENT = "rt.presence"


def channel_group(channel: str) -> str:
    """The channel layer group of a channel's subscribers (layer group names allow fewer characters)."""
    return "rt.ch." + hashlib.sha1(channel.encode()).hexdigest()


def message_frame(publication_text: str) -> str:
    """The `message` push of a stored publication: its JSON with `"type"` in front."""
    return '{"type":"message",' + publication_text[1:]


def check_data_size(data: Any) -> None:
    """Refuse data whose JSON is over MAX_FRAME_BYTES (`too_large`)."""
    limit = realtime_settings.MAX_FRAME_BYTES
    if len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()) > limit:
        raise TooLarge(f"`data` over {limit} bytes.")


async def fan_out(channel: str, published: Published, ts: int) -> None:
    """Send a publication to every subscriber of `channel` on every process."""
    await get_channel_layer().group_send(
        channel_group(channel),
        {
            "type": MESSAGE_EVENT,
            "channel": channel,
            "epoch": published.epoch,
            "offset": published.offset,
            "frame": message_frame(published.text),
            "ts": ts,
        },
    )


async def publish(channel: str, data: Any, *, user: int | None = None) -> Published:
    """Publish `data` to `channel` as user id `user` (None: the server); returns its position.

    Raises `BadRequest`/`UnknownNamespace` for a bad channel. Permissions are the
    caller's business: this is the server side, which may publish anywhere.
    """
    namespace, _ = resolve(channel)
    ts = now_ms()
    head, tail = publication_parts(channel, data, user, ts)
    published = await get_engine().publish(channel, head, tail, size=namespace.history_size, ttl=namespace.history_ttl)
    metrics.published()
    await fan_out(channel, published, ts)
    return published


publish_sync = async_to_sync(publish)
