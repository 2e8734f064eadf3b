"""Control events that reach live sockets on any server process, through the engine's fan-out.

One topic carries them all (`CONTROL_TOPIC`): every process hears every control event once per
event loop, and its switchboard (`realtime.pubsub.switchboard`) hands each to the sockets it
names there, by user, by Django session or by socket address. They are rare (a logout, an admin
action, a room removal, a session resumed elsewhere), so one topic costs nothing, and a connect
costs no round trip to join anything: no per-socket channel, no group. Each socket has an address
(`Connection.channel_name`, a session record's owner) that names it on whichever process it runs.

An event is `c` + JSON (`realtime.core.frames`):

    {"do": "disconnect", "user": "<id>" | "session": "<digest>" | "to": [<address>, ...],
     "code": 4503, "reason": "forbidden", "taken_over": true?}
    {"do": "end", "user": "<id>", "channel": "<channel>", "reason": "<reason>"}
    {"do": "ping", "id": "<nonce>"}                      (the health check's round trip)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync

from realtime.core.frames import CONTROL_CHANNEL_END, CONTROL_DISCONNECT, CONTROL_TOPIC, control_event
from realtime.core.protocol import CloseCode
from realtime.core.users import user_key
from realtime.engine import get_engine

DISCONNECT = CONTROL_DISCONNECT
CHANNEL_END = CONTROL_CHANNEL_END


def django_session_key(session_key: str) -> str:
    """How a control event names a Django session: by a digest, as a session key is a credential."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:40]


async def send(event: dict[str, Any]) -> None:
    """Send a control event to every process (raises when the engine cannot take it)."""
    await get_engine().broadcast(CONTROL_TOPIC, control_event(event))


def disconnect_event(code: CloseCode, reason: str | None = None, **target: Any) -> dict[str, Any]:
    """The control event that makes the sockets `target` names disconnect with `code`.

    Stamped with when it was sent (`at`, Unix microseconds): a socket whose credentials were checked
    before that and that joins the switchboard just after the event went by is still told.
    """
    code = CloseCode(code)
    return {"do": DISCONNECT, **target, "code": int(code), "reason": reason or code.reason, "at": now_us()}


def now_us() -> int:
    return time.time_ns() // 1000


async def disconnect_django_session(session_key: str) -> None:
    """End the sockets authenticated by this Django session's cookie (a logout, its deletion), everywhere."""
    await send(disconnect_event(CloseCode.FORBIDDEN, session=django_session_key(session_key)))


async def disconnect_user(user_id: Any, code: CloseCode, reason: str | None = None) -> None:
    """Disconnect every socket of a user, on every server process."""
    await send(disconnect_event(code, reason, user=user_key(user_id)))


async def disconnect_channels(addresses: Iterable[str], code: CloseCode, reason: str | None = None) -> int:
    """Disconnect the sockets at these addresses (`Connection.channel_name`), in one event; returns how many."""
    to = sorted(set(addresses))
    if to:
        await send(disconnect_event(code, reason, to=to))
    return len(to)


async def take_over(address: str) -> None:
    """Tell the socket at `address` that another socket resumed its session (it closes with 4509)."""
    await send({**disconnect_event(CloseCode.SESSION_TAKEN_OVER, to=[address]), "taken_over": True})


async def end_channel_for_user(user_id: Any, channel: str, reason: str) -> None:
    """Unsubscribe every socket of a user from `channel` (pushing `unsubscribed` with `reason`)
    and forget its publish permission there, on every process."""
    await send({"do": CHANNEL_END, "user": user_key(user_id), "channel": channel, "reason": reason})


disconnect_django_session_sync = async_to_sync(disconnect_django_session)
disconnect_user_sync = async_to_sync(disconnect_user)
disconnect_channels_sync = async_to_sync(disconnect_channels)
end_channel_for_user_sync = async_to_sync(end_channel_for_user)
