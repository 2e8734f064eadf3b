"""In-process fan-out: each process hears a channel once and hands its events to its subscribers.

A publication reaches a process once, on the engine's listener (one Redis pub/sub
subscription per channel that has subscribers in this process; with the memory engine,
directly), with its `message` frame already serialised. The hub splits off its position
and hands the same frame text, with its length in UTF-8 bytes (measured once: an ASCII
frame costs nothing to measure), to every local subscription of the channel: a dict lookup,
an offset comparison and a queue append per subscriber, no channel-layer message, no
decoding, no encoding, no task. Order and completeness stay per subscription (`realtime.socket.subscriptions`
checks offsets and fills gaps from history), so an event lost on the process's one
subscription (a Redis reconnect) is healed from history as before. A lost event that
nothing follows (a quiet channel's last publication) shows no gap: every DELIVERY_CHECK
seconds the hub reads the stored position of all its channels in one batch and hands it
to their subscribers (`Hub.check`).

Presence changes travel the same way (`broadcast`), and so do control events (revocation,
admin actions, room removal, session takeover): on one topic, `CONTROL_TOPIC`, whose one
target is the loop's switchboard (`realtime.pubsub.switchboard`). The delivery check leaves
that topic alone: it has no history.

One `Hub` per event loop (redis-py connections belong to their loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from realtime.core import protocol
from realtime.core.frames import CONTROL_EVENT, CONTROL_TOPIC, PRESENCE_EVENT, PUBLICATION_EVENT
from realtime.core.limits import utf8_size
from realtime.engine import Engine, Position, get_engine
from realtime.engine.base import Listener, PresenceChange
from realtime.support import metrics
from realtime.support.advisory import advisory
from realtime.support.conf import realtime_settings
from realtime.support.state import current

logger = logging.getLogger(__name__)


class Target(Protocol):
    """What the hub hands events to: one connection's subscriptions (`realtime.socket.subscriptions`)."""

    def on_publication(self, channel: str, epoch: str, offset: int, frame: str, size: int) -> bool:
        """A live publication, its frame of `size` UTF-8 bytes; True when the frame was queued for the client."""

    def on_presence(self, channel: str, frames: list[str], count: int) -> None:
        """Presence pushes (already serialised) for the channel."""

    def on_resubscribed(self, channel: str) -> None:
        """Events of the channel may have been lost: check the position against history."""

    def on_stored(self, channel: str, position: Position | None) -> None:
        """The channel's stored position one delivery check ago (None: no stream): heal if behind it."""


_UNCHECKED = object()  # a channel's stored position before its first delivery check


class _Channel:
    """The local subscribers of one channel, and the engine subscription they share."""

    __slots__ = ("ready", "stored", "targets")

    def __init__(self) -> None:
        self.targets: dict[Target, None] = {}  # insertion-ordered set
        self.ready: asyncio.Future | None = None  # resolved once the engine subscription is confirmed
        self.stored: Position | None | object = _UNCHECKED  # read by the last delivery check


class Hub:
    """This event loop's subscribers per channel, fed by one engine listener."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.channels: dict[str, _Channel] = {}
        self._listener: Listener | None = None
        self._checker: asyncio.Task | None = None  # the delivery check, while there are channels
        self._check_failing: set[str] = set()  # (the node beat's once-per-streak logging)

    @property
    def listener(self) -> Listener:
        if self._listener is None:
            self._listener = self.engine.listener(self.receive, self.resubscribed)
        return self._listener

    async def add(self, channel: str, target: Target) -> None:
        """Hand `channel`'s events to `target` from now on; returns once none can be missed."""
        entry = self.channels.get(channel)
        if entry is None:
            entry = self.channels[channel] = _Channel()
            entry.ready = asyncio.ensure_future(self.listener.subscribe(channel))
            if channel != CONTROL_TOPIC:
                self._start_checking()
        entry.targets[target] = None
        try:
            # Shielded: one subscriber giving up (its socket closed) must not cancel it for the others.
            await asyncio.shield(entry.ready)
        except BaseException:
            self.discard(channel, target)
            raise

    def discard(self, channel: str, target: Target) -> None:
        """Stop handing `channel`'s events to `target`; the last one out ends the engine subscription."""
        entry = self.channels.get(channel)
        if entry is None or target not in entry.targets:
            return
        del entry.targets[target]
        if not entry.targets:
            del self.channels[channel]
            if entry.ready is not None and entry.ready.done() and not entry.ready.cancelled():
                if entry.ready.exception() is None:
                    self.listener.unsubscribe(channel)
            elif entry.ready is not None:
                # Still subscribing: unsubscribe once that is through (or it failed: nothing to undo).
                entry.ready.add_done_callback(lambda ready: self._unsubscribe_later(channel, ready))

    def _unsubscribe_later(self, channel: str, ready: asyncio.Future) -> None:
        if ready.cancelled() or ready.exception() is not None:
            return
        if channel not in self.channels:  # nobody came back meanwhile
            self.listener.unsubscribe(channel)

    # ---------------------------------------------------------------- events

    def receive(self, channel: str, event: str) -> None:
        """One event of `channel` from the engine, handed to every local subscriber (the hot path)."""
        entry = self.channels.get(channel)
        if entry is None:
            return
        kind = event[0]
        if kind == PUBLICATION_EVENT:
            epoch, offset, ts, frame = event[1:].split(" ", 3)
            offset = int(offset)
            size = utf8_size(frame)  # once for every subscriber's send queue (SEND_QUEUE_BYTES counts bytes)
            delivered = 0
            for target in list(entry.targets):
                if target.on_publication(channel, epoch, offset, frame, size):
                    delivered += 1
            if delivered:
                metrics.delivered(delivered, int(ts))
        elif kind == PRESENCE_EVENT:
            change = json.loads(event[1:])
            frames = [protocol.encode(protocol.leave(channel, user)) for user in change["left"]]
            frames += [protocol.encode(protocol.join(channel, user)) for user in change["joined"]]
            for target in list(entry.targets):
                target.on_presence(channel, frames, len(change["left"]))
        elif kind == CONTROL_EVENT:
            control = json.loads(event[1:])
            for target in list(entry.targets):
                target.on_control(control)
        else:  # from a newer or older server version: ignore rather than break delivery
            logger.warning("realtime fan-out: unknown event kind %r on %s", kind, channel)

    def resubscribed(self, channel: str) -> None:
        """The listener reconnected: every subscriber of `channel` checks what it may have missed."""
        entry = self.channels.get(channel)
        if entry is not None:
            for target in list(entry.targets):
                target.on_resubscribed(channel)

    # ---------------------------------------------------------------- the delivery check

    def _start_checking(self) -> None:
        if self._checker is None or self._checker.done():
            self._checker = asyncio.ensure_future(self._check_periodically())

    async def _check_periodically(self) -> None:
        """`check()` every DELIVERY_CHECK seconds while this loop serves a channel (then it ends)."""
        while any(channel != CONTROL_TOPIC for channel in self.channels):
            await asyncio.sleep(realtime_settings.DELIVERY_CHECK)
            # Redis away: one warning per streak; the listener reconnects and its subscribers heal anyway.
            await advisory("delivery check", self.check, self._check_failing)

    async def check(self) -> None:
        """Catch publications the fan-out lost with nothing after them to reveal the gap.

        Reads the stored position of every channel served here in one batch (one engine call per
        period, whatever the number of subscribers) and hands each subscriber the position read at
        the *previous* check: a publication stored a whole period ago and still not delivered was
        lost. (The position of now would also name publications whose events are on their way, and
        send every busy channel's subscribers to history at each check.) So a lost last publication
        is delivered within two periods.
        """
        channels = [channel for channel in self.channels if channel != CONTROL_TOPIC]
        if not channels:
            return
        stored = await self.engine.positions(channels)
        for channel, position in stored.items():
            entry = self.channels.get(channel)
            if entry is None:
                continue
            previous, entry.stored = entry.stored, position
            if previous is not _UNCHECKED:
                for target in list(entry.targets):
                    target.on_stored(channel, previous)

    async def close(self) -> None:
        self.channels.clear()
        if self._checker is not None:
            self._checker.cancel()
            self._checker = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()


def get_hub() -> Hub:
    """The hub of the running event loop and its engine: a part of the process's Node (one per loop and engine)."""
    engine = get_engine()
    return current().loop_part((Hub, id(engine)), lambda: Hub(engine))


async def announce(channel: str, change: PresenceChange) -> None:
    """Send `join`/`leave` for a presence change to every subscriber of the channel, on every process."""
    if change.joined or change.left:
        payload: dict[str, Any] = {"joined": change.joined, "left": change.left}
        await get_engine().broadcast(channel, PRESENCE_EVENT + json.dumps(payload, separators=(",", ":")))
