"""Control messages that reach live sockets on any server process, through the channel layer.

Every socket's consumer is in the group `user_group(user_id)` once authenticated,
and has a channel name stored on its `Connection` row, so a revocation or an
admin action reaches it wherever it runs. The event is handled by
`RealtimeConsumer.rt_disconnect`: `disconnect` frame, then close with the code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync

from realtime.core.protocol import CloseCode
from realtime.engine.layer import channel_layer

DISCONNECT_EVENT = "rt.disconnect"
CHANNEL_END_EVENT = "rt.channel.end"
_PLAIN_USER_ID = re.compile(r"[A-Za-z0-9_.-]{1,80}\Z")  # `rt.user.` + this stays a valid group name


def user_group(user_id: Any) -> str:
    """The channel layer group of every socket of one user, named by `str()` of its primary key.

    `str()` makes a primary key and its text (a UUID and `str(uuid)`, 7 and "7") one group. An
    id of group-name characters (an integer, a UUID) names it as is, `rt.user.7`; any other (a
    string key with `@`, or too long: channels takes 1-99 characters of `[A-Za-z0-9_.-]`) by a
    digest under a prefix that no plain name has, `rt.userh.<sha256>`.
    """
    key = str(user_id)
    if _PLAIN_USER_ID.match(key):
        return f"rt.user.{key}"
    return "rt.userh." + hashlib.sha256(key.encode()).hexdigest()[:40]


def django_session_group(session_key: str) -> str:
    """The channel layer group of the sockets a Django session authenticated (by its cookie).

    Named by a digest: group names are visible in Redis, and a session key is a credential.
    """
    return "rt.session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


async def disconnect_django_session(session_key: str) -> None:
    """End the sockets authenticated by this Django session's cookie (a logout, its deletion), everywhere."""
    await channel_layer().group_send(django_session_group(session_key), disconnect_event(CloseCode.FORBIDDEN))


disconnect_django_session_sync = async_to_sync(disconnect_django_session)


def disconnect_event(code: CloseCode, reason: str | None = None) -> dict:
    """The channel layer event that makes a consumer disconnect with `code`."""
    code = CloseCode(code)
    return {"type": DISCONNECT_EVENT, "code": int(code), "reason": reason or code.reason}


async def disconnect_user(user_id: Any, code: CloseCode, reason: str | None = None) -> None:
    """Disconnect every socket of a user, on every server process."""
    await channel_layer().group_send(user_group(user_id), disconnect_event(code, reason))


async def disconnect_channels(channel_names: Iterable[str], code: CloseCode, reason: str | None = None) -> int:
    """Disconnect the consumers behind these channel names; returns how many were told."""
    layer = channel_layer()
    event = disconnect_event(code, reason)
    count = 0
    for name in channel_names:
        await layer.send(name, dict(event))
        count += 1
    return count


disconnect_user_sync = async_to_sync(disconnect_user)
disconnect_channels_sync = async_to_sync(disconnect_channels)


async def end_channel_for_user(user_id: Any, channel: str, reason: str) -> None:
    """Unsubscribe every socket of a user from `channel` (pushing `unsubscribed` with `reason`)
    and forget its publish permission there, on every process."""
    await channel_layer().group_send(
        user_group(user_id), {"type": CHANNEL_END_EVENT, "channel": channel, "reason": reason}
    )


end_channel_for_user_sync = async_to_sync(end_channel_for_user)
