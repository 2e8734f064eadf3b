"""The per-user connection limit (MAX_CONNECTIONS_PER_USER), counted in the engine, not the database.

Every authenticated socket holds a *slot*: an entry under its user in the engine
(Redis: a sorted set of slot -> expiry, by Redis's clock), named by the socket's
channel name, which is unique per socket (a session id is not: a resume takes a
session over while the old socket may still be closing). `admit` takes a slot in one
atomic step, dropping lapsed ones first, when the user holds fewer than the limit;
so two sockets authenticating at once, in any order, cannot both take the last one.
`release` gives it back at close. The node's beat renews this process's slots
(`touch_local`); the slots of a process that died lapse after three beats, so only
live sockets count (PROTOCOL section 8).

Before its slot, every authenticated connect (handshake credentials, an `auth` frame, a
resume) takes one token of its user's connect bucket in the engine (CONNECT_BURST at once,
refilled at CONNECT_RATE per second, shared by every process): a client reconnecting in a
loop with a valid token is refused 4008 ("reconnect after backoff") and costs no slot.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from realtime.core.protocol import CloseCode
from realtime.engine import get_engine
from realtime.engine.base import AT_LIMIT, OVER_RATE
from realtime.sessions.live import live_addresses
from realtime.support.conf import realtime_settings
from realtime.support.state import current


def local() -> dict[str, str]:
    """The slots this process's live sockets hold: slot (channel name) -> user id, for the beat (a Node part)."""
    return current().part((__name__, "local"), dict)


def ttl() -> float:
    """How long a slot lasts without its process renewing it: three beats (as a node's liveness)."""
    return 3 * realtime_settings.NODE_HEARTBEAT


async def admit(user_id: Any, slot: str) -> CloseCode | None:
    """Count a connect of this user and take a slot for its socket `slot`: None when admitted, else the
    close code of the refusal (4008 over the user's connect rate, 4529 at MAX_CONNECTIONS_PER_USER).

    A failure of the engine is raised (the caller answers `unavailable`) and holds no slot here.
    """
    user, settings = str(user_id), realtime_settings.values
    admitted = await get_engine().admit(
        user,
        slot,
        rate=settings["CONNECT_RATE"],
        burst=settings["CONNECT_BURST"],
        limit=settings["MAX_CONNECTIONS_PER_USER"],
        ttl=ttl(),
    )
    if admitted == OVER_RATE:
        return CloseCode.RATE_LIMITED
    if admitted == AT_LIMIT:
        return CloseCode.TOO_MANY_CONNECTIONS
    local()[slot] = user  # (a socket cancelled during the await holds none here: its slot lapses in the engine)
    return None


async def release(slot: str) -> None:
    """The socket is gone: stop renewing its slot and give it back (a failure: it lapses on its own)."""
    user = local().pop(slot, None)
    if user is not None:
        await get_engine().slot_release(user, slot)


async def touch_local() -> None:
    """The node's beat: renew the slots of this process's live sockets, in one batch.

    Only of sockets that are really alive here: a consumer that ended without its
    `on_disconnect` (killed by its server, a crash inside it) left its slot in `local()`;
    it is forgotten now and lapses in the engine, so it cannot hold the user's slot for ever.
    """
    if not local():
        return
    alive = live_addresses()
    for slot in [slot for slot in local() if slot not in alive]:
        del local()[slot]
    by_user: dict[str, list[str]] = defaultdict(list)
    for slot, user in local().items():
        by_user[user].append(slot)
    if by_user:
        await get_engine().slot_touch(dict(by_user), ttl=ttl())
