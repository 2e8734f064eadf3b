"""This event loop's sockets by user, by Django session and by address: where control events land.

Control events (`realtime.sessions.control`) travel on one engine topic that every event loop
serving sockets hears once, through its hub (one subscription, made when the first socket
authenticates). A socket joins with its keys when it authenticates and leaves when it ends: two
dict operations each, no round trip, no task, no channel of its own.

A socket's credentials are checked before it joins, so a disconnect for its user (or Django
session) may go by in between: the switchboard keeps the disconnects of the last RECENT_SECONDS
by user and session, and a socket that joins after one sent (`at`) after its check began is told
at once. The loop's first socket also re-checks (below): events before the loop listened were
not heard.

The topic is a fan-out, not a store: an event sent while this loop's fan-out connection was
broken is not heard. When the connection comes back (`on_resubscribed`) every socket here is told
(`control_gap`), and checks the one thing that must never be missed: whether its user's
credentials were revoked meanwhile (the engine records every revocation: `realtime.auth.cache`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from typing import Any, Protocol

from realtime.core.frames import CONTROL_DISCONNECT, CONTROL_PING, CONTROL_TOPIC, control_event
from realtime.engine import get_engine
from realtime.pubsub.hub import Hub, get_hub
from realtime.support.state import current

logger = logging.getLogger(__name__)

RECENT_SECONDS = 300.0  # how long a disconnect by user or session is kept for sockets still joining


class ControlTarget(Protocol):
    """A socket as the switchboard sees it (`realtime.socket.consumer.RealtimeConsumer`)."""

    def on_control(self, event: dict[str, Any]) -> None:
        """A control event for this socket (a disconnect, a channel end)."""

    def control_gap(self) -> None:
        """Control events for this socket may have been lost: check what must not be missed."""


class Switchboard:
    """The sockets of one event loop, keyed as control events name them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.id = secrets.token_hex(6)  # this loop's part of every address it gives: unique across processes
        self._numbers = itertools.count(1)
        self.by_address: dict[str, ControlTarget] = {}
        self.by_user: dict[str, dict[ControlTarget, None]] = {}
        self.by_session: dict[str, dict[ControlTarget, None]] = {}
        self.pings: dict[str, asyncio.Future] = {}
        self.recent: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}  # oldest first
        self._listening: asyncio.Future | None = None

    def address(self) -> str:
        """A new socket address, unique to this loop (and so to this process and the deployment)."""
        return f"{self.id}.{next(self._numbers)}"

    async def listen(self) -> None:
        """Returns once this loop hears control events (at once after the first time); raises while it cannot."""
        if self._listening is None or (self._listening.done() and self._listening.exception() is not None):
            self._listening = asyncio.ensure_future(self.hub.add(CONTROL_TOPIC, self))
        await asyncio.shield(self._listening)

    async def join(
        self, target: ControlTarget, address: str, user: str, session: str | None = None, *, since_us: int = 0
    ) -> None:
        """Hand `target` the control events for its address, its user and its Django session (if any).

        Returns once none can be missed: after this, a revocation reaches the socket. `since_us`: when
        its credentials were checked; a disconnect for its user or session sent since is handed over now.
        """
        first = self._listening is None or not self._listening.done() or self._listening.exception() is not None
        await self.listen()
        self.by_address[address] = target
        self.by_user.setdefault(user, {})[target] = None
        if session is not None:
            self.by_session.setdefault(session, {})[target] = None
        for key in (("user", user), ("session", session)):
            kept = self.recent.get(key)
            if kept is not None and kept[1].get("at", 0) > since_us:
                target.on_control(kept[1])
                return
        if first:  # sent before this loop listened: not heard, and not in `recent`
            target.control_gap()

    def leave(self, target: ControlTarget, address: str, user: str, session: str | None = None) -> None:
        if self.by_address.get(address) is target:
            del self.by_address[address]
        _drop(self.by_user, user, target)
        if session is not None:
            _drop(self.by_session, session, target)

    # ---------------------------------------------------------------- the hub's target

    def on_control(self, event: dict[str, Any]) -> None:
        """A control event from the hub: handed to every socket here that it names."""
        if event.get("do") == CONTROL_PING:
            waiting = self.pings.pop(str(event.get("id")), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
            return
        if event.get("do") == CONTROL_DISCONNECT:
            self._remember(event)
        targets: list[ControlTarget] = []
        if "user" in event:
            targets += self.by_user.get(str(event["user"]), ())
        if "session" in event:
            targets += self.by_session.get(str(event["session"]), ())
        for address in event.get("to") or ():
            target = self.by_address.get(address)
            if target is not None:
                targets.append(target)
        for target in targets:
            try:
                target.on_control(event)
            except Exception:  # one socket's failure must not keep the event from the others
                logger.exception("control event %r failed on a socket", event.get("do"))

    def _remember(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        while self.recent:
            oldest = next(iter(self.recent))
            if now - self.recent[oldest][0] < RECENT_SECONDS:
                break
            del self.recent[oldest]
        for kind in ("user", "session"):
            if kind in event:
                key = (kind, str(event[kind]))
                self.recent.pop(key, None)  # to the end: the order stays by arrival
                self.recent[key] = (now, event)

    def on_resubscribed(self, channel: str) -> None:
        """The fan-out connection came back: events may have been lost, every socket checks."""
        for target in list(self.by_address.values()):
            target.control_gap()

    async def ping(self) -> None:
        """A round trip through the control topic (the health check): sent to every process, heard back here."""
        await self.listen()
        nonce = secrets.token_hex(8)
        heard = self.pings[nonce] = asyncio.get_running_loop().create_future()
        try:
            await self.hub.engine.broadcast(CONTROL_TOPIC, control_event({"do": CONTROL_PING, "id": nonce}))
            await heard
        finally:
            self.pings.pop(nonce, None)


def _drop(table: dict[str, dict[ControlTarget, None]], key: str, target: ControlTarget) -> None:
    members = table.get(key)
    if members is not None:
        members.pop(target, None)
        if not members:
            del table[key]


def switchboard() -> Switchboard:
    """The switchboard of the running event loop (a part of the process's Node, beside its hub)."""
    engine = get_engine()
    return current().loop_part((Switchboard, id(engine)), lambda: Switchboard(get_hub()))
