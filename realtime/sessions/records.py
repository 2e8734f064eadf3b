"""Session resume (PROTOCOL section 3): a session's subscriptions, known to every process.

Each authenticated socket has a record in the engine: its user, its owner (the
socket's channel name) and its subscriptions, each with a position. The record is
written when a subscription is made or ended (one small write each), its positions
are brought up to date by the node's beat (`touch_local`, never per delivery), and
when the socket goes away without a "do not reconnect" close it is kept for
RESUME_WINDOW seconds. So a session resumes on any process, also when the process
that held it was killed: the replay then starts from the positions of its last beat,
or exactly after the client's own `positions`.

The positions are the *acknowledged* ones (`Subscriptions.positions`): what the client
is known to have received, as of its last answered heartbeat, never merely what was
written to its socket. A connection that broke without a close handshake may have lost
its last frames, and a server that closes a socket (1001 at a shutdown, 4004, ...) is not
told by the ASGI server whether the client got what was queued before the close; the
replay repeats those (clients drop duplicates by offset) rather than miss them.

A socket that resumes a session takes it over: the record becomes its own, and a
socket that still held it (the dead end of a connection its client gave up) is
closed with 4509, so that one session is held by one socket at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from realtime.core.protocol import CloseCode
from realtime.engine import SessionWrite, get_engine
from realtime.sessions.control import take_over
from realtime.support.conf import realtime_settings
from realtime.support.state import current

logger = logging.getLogger(__name__)


def local() -> dict[str, SessionRecord]:
    """The live sessions of this process, by session id, for the beat (a part of the process's Node)."""
    return current().part((__name__, "local"), dict)


def resumable(close_code: int | None) -> bool:
    """Whether a socket that closed with this code may be resumed.

    Not after a normal close by the client (1000) or a 4500-4999 close (do not reconnect).
    """
    if close_code is None:
        return True
    return close_code != CloseCode.NORMAL and not 4500 <= close_code <= 4999


def enabled() -> bool:
    """Resume is off with RESUME_WINDOW = 0: then nothing is recorded at all."""
    return realtime_settings.RESUME_WINDOW > 0


def live_ttl() -> float:
    """How long a live socket's record lasts without a beat: three beats, then the resume window."""
    return 3 * realtime_settings.NODE_HEARTBEAT + realtime_settings.RESUME_WINDOW


class SessionRecord:
    """The engine's record of one live socket's session; `positions` reads its subscriptions' acknowledged
    positions."""

    def __init__(self, session: str, owner: str, user_id: Any, positions: Callable[[], dict[str, list]]) -> None:
        self.session = session
        self.owner = owner
        self.user = str(user_id)
        self.positions = positions
        self.recorded: dict[str, list] = {}  # what the engine holds, as far as this socket knows
        self.taken_over = False  # another socket resumed this session: write nothing more

    def open(self) -> None:
        """Start keeping the record up to date (the beat sees it from now on)."""
        if enabled():
            local()[self.session] = self

    def pending(self) -> SessionWrite:
        """What the engine lacks: changed positions (and, always, a renewal of the record's lifetime)."""
        current = self.positions()
        changes: dict[str, list | None] = {ch: pos for ch, pos in current.items() if self.recorded.get(ch) != pos}
        changes.update(dict.fromkeys(self.recorded.keys() - current.keys()))
        return SessionWrite(self.session, self.owner, self.user, changes)

    def written(self, write: SessionWrite, ok: bool) -> None:
        """Note the outcome of a write: the new state, or that the session was taken over."""
        if not ok:
            self.mark_taken_over()
            return
        for channel, position in write.changes.items():
            if position is None:
                self.recorded.pop(channel, None)
            else:
                self.recorded[channel] = position

    def mark_taken_over(self) -> None:
        """Another socket holds the session now: stop writing its record."""
        self.taken_over = True
        self._unregister()

    def _unregister(self) -> None:
        if local().get(self.session) is self:
            del local()[self.session]

    async def write(self, ttl: float | None = None) -> None:
        """Bring the record up to date now (after a subscribe or an unsubscribe); failures are logged."""
        if self.taken_over or not enabled():
            return
        write = self.pending()
        try:
            (ok,) = await get_engine().session_write([write], ttl=ttl or live_ttl())
        except Exception as exc:  # the client's own positions still make its resume whole
            logger.warning("could not record session %s: %r", self.session, exc)
            return
        self.written(write, ok)

    async def close(self, close_code: int | None) -> None:
        """The socket is gone: keep the record for a resume, or forget it after a deliberate close."""
        self._unregister()
        if self.taken_over or not enabled():
            return
        if resumable(close_code):
            await self.write(ttl=realtime_settings.RESUME_WINDOW)
        else:
            await get_engine().session_delete(self.session, self.owner)


async def take(session_id: str | None, owner: str, user_id: Any) -> dict[str, list] | None:
    """Take over `session_id` for the socket `owner` when it is this user's: its subscriptions, else None.

    A socket that still held the session is told to close (4509). Asking for another
    user's session consumes it, so a guessed id cannot be tried twice.
    """
    if not session_id or not enabled():
        return None
    try:
        taken = await get_engine().session_take(session_id, owner, str(user_id), ttl=live_ttl())
    except Exception as exc:  # no resume is the safe answer: the client recovers channel by channel
        logger.warning("could not read session %s for a resume: %r", session_id, exc)
        return None
    if taken is None:
        return None
    if taken.owner and taken.owner != owner:
        try:
            await take_over(taken.owner)
        except Exception as exc:  # that socket's writes are refused anyway; it ends at its heartbeat
            logger.warning("could not tell the previous socket of %s to close: %r", session_id, exc)
    return taken.subscriptions


async def touch_local() -> None:
    """The node's beat: record every live session's positions and renew its lifetime, in one batch."""
    records = list(local().values())
    if not records:
        return
    writes = [record.pending() for record in records]
    results = await get_engine().session_write(writes, ttl=live_ttl())
    for record, write, ok in zip(records, writes, results, strict=True):
        record.written(write, ok)
