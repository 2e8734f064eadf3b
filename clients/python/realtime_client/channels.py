"""The subscribe side of the protocol, without I/O: each channel's state, position and dedupe.

`Channel` is one channel: wanted or not, its state and position, what a `subscribed` or a
`message` means for it. `Channels` holds them all for the session core (session.py) and
does the subscribing: restore at `welcome`, `subscribe` replies, the channel pushes,
retries. Both append what to do to the core's action list. Position rule (CLIENTS.md,
centrifuge-js #425): store the position of a publication, then emit it. A live `message`
at or below the position is dropped; one that skips an offset, or comes in another epoch,
means lost state: unsubscribe and subscribe again with `recover`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from .actions import Action, ArmTimer, Deliver, Emit, Finish
from .errors import TIMEOUT, RealtimeError
from .models import (
    Position,
    PresenceEvent,
    Publication,
    SubscribedEvent,
    SubscriptionState,
    UnsubscribedEvent,
    User,
)

TEMPORARY = frozenset({"rate_limited", "unavailable", "internal", TIMEOUT})  # a refused subscribe is retried
SUBSCRIBE, UNSUBSCRIBE = "subscribe", "unsubscribe"  # kinds of request, for the core's table
CHANNEL_PUSHES = frozenset({"subscribed", "message", "unsubscribed", "join", "leave"})

# Markers for `Channel.pending`, besides the id of a `subscribe` in flight.
EXPECT_PUSH = "expect_push"  # restored by a resume: the server pushes its `subscribed`
RETRY = "retry"  # a temporary error: a timer subscribes again


class Channel:
    """The protocol state of one channel; its `Subscription` reads `state` and `position` from here."""

    def __init__(self, name: str, emit: Callable[[Action], None], logger: logging.Logger) -> None:
        self.name = name
        self.state = SubscriptionState.UNSUBSCRIBED
        self.position: Position | None = None
        self.wanted = False
        self.pending: int | str | None = None  # the subscribe in flight (its id), or a marker
        self.recovering = False  # whether that subscribe carried a position
        self._emit = emit
        self._logger = logger

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.state} at {self.position}>"

    def start(self) -> None:
        """Wanted, and subscribing (the core sends the frame when it can)."""
        self.wanted = True
        self.state = SubscriptionState.SUBSCRIBING

    def subscribing(self, pending: int | str, recovering: bool) -> None:
        """A `subscribe` went out (`pending` is its id), or the server will push one (`EXPECT_PUSH`)."""
        self.pending, self.recovering = pending, recovering
        self.state = SubscriptionState.SUBSCRIBING

    def suspend(self) -> None:
        """The connection dropped: a wanted channel waits to be restored."""
        self.pending = None
        self.state = SubscriptionState.SUBSCRIBING if self.wanted else SubscriptionState.UNSUBSCRIBED

    def subscribed(self, frame: dict[str, Any]) -> None:
        """Apply a `subscribed` (reply or push): the event first, then the replayed publications, deduped."""
        publications = frame.get("publications") or []
        epoch, offset = str(frame["epoch"]), int(frame["offset"])
        self.pending = None
        self.state = SubscriptionState.SUBSCRIBED
        recovering, self.recovering = self.recovering, False
        recovered = bool(frame.get("recovered")) and recovering
        event = SubscribedEvent(self.name, epoch, offset, recovering, recovered, len(publications))
        self._emit(Emit("subscribed", event, self.name))
        for item in publications:
            pub = Publication.from_frame(item, self.name, recovered=True)
            pos = self.position
            if pos is None or pub.epoch != pos.epoch or pub.offset > pos.offset:
                self._deliver(pub)
        pos = self.position
        if pos is None or pos.epoch != epoch or offset > pos.offset:
            self.position = Position(epoch, offset)

    def message(self, frame: dict[str, Any]) -> bool:
        """A live publication: deliver it or drop a duplicate; True on a gap or a new epoch (resubscribe)."""
        if self.state is not SubscriptionState.SUBSCRIBED:
            return False
        pub = Publication.from_frame(frame, self.name)
        pos = self.position
        if pos is not None:
            if pub.epoch != pos.epoch or pub.offset > pos.offset + 1:
                self._logger.info(
                    "%s: lost state (at %s:%s, got %s:%s), recovering",
                    self.name,
                    pos.epoch,
                    pos.offset,
                    pub.epoch,
                    pub.offset,
                )
                self.state = SubscriptionState.SUBSCRIBING
                return True
            if pub.offset <= pos.offset:
                return False
        self._deliver(pub)
        return False

    def presence(self, kind: str, frame: dict[str, Any]) -> None:
        """A `join` or `leave` push."""
        user = frame.get("user") or {}
        self._emit(Emit(kind, PresenceEvent(self.name, User(user.get("id"), user.get("username", ""))), self.name))

    def error(self, error: BaseException) -> None:
        """A failure of this channel, for its `error` callbacks."""
        self._emit(Emit("error", error, self.name))

    def end(self, reason: str, error: BaseException | None = None) -> None:
        """Terminal: not wanted any more; emit `error` (when given) and `unsubscribed`, end the iterators."""
        was_active = self.wanted or self.state is not SubscriptionState.UNSUBSCRIBED
        self.wanted = False
        self.pending = None
        self.recovering = False
        self.state = SubscriptionState.UNSUBSCRIBED
        self.position = None
        if error is not None:
            self.error(error)
        if was_active:
            self._emit(Emit("unsubscribed", UnsubscribedEvent(self.name, reason), self.name))
        self._emit(Finish(self.name))

    def close(self) -> None:
        """The client closed: unsubscribed but still wanted (a later `connect()` restores it)."""
        self.state, self.pending = SubscriptionState.UNSUBSCRIBED, None
        self._emit(Finish(self.name))

    def _deliver(self, pub: Publication) -> None:
        self.position = pub.position  # store, then emit
        self._emit(Deliver(self.name, pub))


Request = Callable[[dict[str, Any], str, "str | None"], int]  # send a frame with a new id: (frame, kind, channel)


class Channels:
    """Every `Channel` by name, and what the protocol does with them across connections."""

    def __init__(
        self, out: list[Action], request: Request, retry_delay: Callable[[], float], logger: logging.Logger
    ) -> None:
        self._by_name: dict[str, Channel] = {}
        self._out = out
        self._request = request
        self._retry_delay = retry_delay
        self._logger = logger

    def __iter__(self) -> Iterator[Channel]:
        return iter(list(self._by_name.values()))

    def get(self, name: Any) -> Channel | None:
        """The channel called `name`, if the application ever subscribed it."""
        return self._by_name.get(name)

    def channel(self, name: str) -> Channel:
        """The channel's one `Channel`, created (not wanted yet) on first use."""
        channel = self._by_name.get(name)
        if channel is None:
            channel = self._by_name[name] = Channel(name, self._out.append, self._logger)
        return channel

    def positions(self) -> dict[str, dict[str, Any]]:
        """The position of every wanted channel that has one, for a resume."""
        return {ch.name: ch.position.to_json() for ch in self if ch.wanted and ch.position is not None}

    def restore(self, resumed: set[str]) -> None:
        """At `welcome`: each wanted channel waits for its push (in `resumed`) or subscribes again."""
        for channel in self:
            if not channel.wanted:
                continue
            if channel.name in resumed:
                channel.subscribing(EXPECT_PUSH, True)  # the server pushes its `subscribed`
            else:
                self.send_subscribe(channel)

    def send_subscribe(self, channel: Channel) -> None:
        """`subscribe`, with `recover` from the last position when there is one."""
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel.name}
        if channel.position is not None:
            frame["recover"] = channel.position.to_json()
        rid = self._request(frame, SUBSCRIBE, channel.name)
        channel.subscribing(rid, channel.position is not None)

    def resync(self, channel: Channel) -> None:
        """Lost state: unsubscribe, then subscribe again with `recover` from the last position."""
        self._request({"type": "unsubscribe", "channel": channel.name}, UNSUBSCRIBE, None)
        self.send_subscribe(channel)

    def reply(self, name: str, rid: int, reply: dict[str, Any], generation: int) -> None:
        """The reply to `subscribe` `rid` in connection `generation`: subscribed, retried later, or refused."""
        channel = self._by_name[name]
        if channel.pending != rid:
            return  # a newer subscribe (or a push) superseded this one
        if reply.get("type") == "subscribed":
            channel.subscribed(reply)
            return
        code, message = reply.get("code", "error"), reply.get("message", "")
        if code == "already_subscribed":  # restored by a resume but its push not seen: start over
            self.resync(channel)
        elif code in TEMPORARY:
            channel.error(RealtimeError(code, message))
            channel.pending = RETRY
            self._out.append(ArmTimer(self._retry_delay(), "subscribe-retry", generation, name))
        else:
            channel.end(code, RealtimeError(code, message))

    def retry(self, name: str | None) -> None:
        """A retry timer fired (in the open connection): subscribe again if still wanted and waiting."""
        channel = self._by_name.get(name)
        if channel is not None and channel.wanted and channel.pending == RETRY:
            self.send_subscribe(channel)

    def pushed(self, frame: dict[str, Any]) -> None:
        """A channel push: `subscribed`, `message`, `unsubscribed`, `join` or `leave`."""
        kind = frame["type"]
        if kind == "subscribed":
            channel = self._by_name.get(frame["channel"])
            if channel is None or not channel.wanted:  # restored by a resume, but no longer wanted
                self._request({"type": "unsubscribe", "channel": frame["channel"]}, UNSUBSCRIBE, None)
            else:
                channel.subscribed(frame)
            return
        channel = self._by_name.get(frame.get("channel"))
        if channel is None or not channel.wanted:
            return
        if kind == "message":
            if channel.message(frame):
                self.resync(channel)
        elif kind == "unsubscribed":
            reason = frame.get("reason") or "unsubscribed"
            if reason == "insufficient_state":
                self.send_subscribe(channel)  # the server could not fill a gap: recover from our position
            else:
                channel.end(reason, RealtimeError(reason, f"{channel.name}: the server ended the subscription"))
        else:
            channel.presence(kind, frame)
