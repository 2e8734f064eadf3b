"""A connection's subscriptions: subscribe, deliver in order, fill gaps, leave.

Publications come from the process's hub (`realtime.pubsub.hub`, one subscription per
process and channel). That is a transport, not a store: it may drop or repeat. Each
subscription remembers the last offset delivered; a live message at exactly the
next offset goes out as is (the pre-serialised frame, no parsing), an older one is
a duplicate and dropped, and one that skips ahead is preceded by the missing
publications read from history. When history cannot fill the gap (trimmed, or a
new epoch after lost data) the subscription ends with `unsubscribed` reason
`insufficient_state`: the client resubscribes with `recover` and learns
`recovered: false`.

Delivered is not received: a connection that breaks without a close loses what was
written just before. What a resume replays from (the session record) is therefore the
position each subscription had when the client's last answered heartbeat `ping` was
queued (its `pong` proves every frame before it arrived: the connection and the send
queue keep order), or where the subscription started when it is newer than that ping.
That costs one snapshot per ping, nothing per message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from realtime.core import protocol
from realtime.core.errors import (
    AlreadySubscribed,
    LimitExceeded,
    NotSubscribed,
    PermissionDenied,
    RealtimeError,
    with_id,
)
from realtime.core.frames import message_frame
from realtime.core.users import wire_user
from realtime.engine import Position, Slice, get_engine
from realtime.namespaces import Namespace, allowed, check_access, resolve
from realtime.pubsub import presence
from realtime.pubsub.hub import get_hub
from realtime.signals import SocketSignals, channel_subscribed, channel_unsubscribed
from realtime.socket.state import Socket
from realtime.support import metrics
from realtime.support.services import SERVICE_ERRORS, backing_service

logger = logging.getLogger(__name__)

INSUFFICIENT_STATE = "insufficient_state"


@dataclass(slots=True)
class Subscription:
    """One channel this connection receives: the last position delivered (`offset`), and the last one the
    client is known to have (`acked`: see the module docstring), both in `epoch`, which never changes.

    `held` is not None while a history read for this subscription is under way (a gap
    being filled): live publications wait there, in arrival order, and are delivered
    after it (or dropped as duplicates).
    """

    channel: str
    namespace: Namespace
    epoch: str
    offset: int
    acked: int
    held: list[tuple[str, int, str, int]] | None = None  # (epoch, offset, frame, its UTF-8 bytes)


class Subscriptions:
    """The subscriptions of one connection, and publish permissions it has already checked."""

    def __init__(self, consumer: Socket, signals: SocketSignals | None = None) -> None:
        self.consumer = consumer
        self.signals = signals if signals is not None else SocketSignals(type(consumer))  # realtime.signals
        self.active: dict[str, Subscription] = {}
        self.may_publish: dict[str, bool] = {}
        # Channels being joined: live publications heard before the position is read wait here.
        self.joining: dict[str, list[tuple[str, int, str, int]]] = {}
        self.fills: set[asyncio.Task] = set()  # history reads for gaps, cancelled when the socket goes
        # Each subscription's delivered offset when the oldest heartbeat `ping` not yet answered was queued.
        self.pinged: list[tuple[Subscription, int]] | None = None

    def user_info(self) -> dict[str, Any]:
        """This socket's user as presence, `join` and `leave` show it (JSON: a UUID id as a string)."""
        return wire_user(self.consumer.user)

    async def resolve(self, channel: str, request_id) -> tuple[Namespace, str]:
        """The channel's namespace, or an error carrying the request id."""
        try:
            return resolve(channel)
        except RealtimeError as exc:
            raise with_id(exc, request_id) from None

    async def check_subscribe(self, namespace: Namespace, name: str, request_id) -> None:
        """Raise `permission_denied` unless the namespace lets this user subscribe (read history, presence)."""
        await check_access(namespace, self.consumer.user, name, "subscribe", request_id)

    async def check_publish(self, namespace: Namespace, name: str, channel: str, request_id) -> None:
        """Raise `permission_denied` unless this user may publish here; the answer is kept per connection."""
        may = self.may_publish.get(channel)
        if may is None:
            may = self.may_publish[channel] = await allowed(namespace, self.consumer.user, name, "publish", request_id)
        if not may:
            raise PermissionDenied(f"You may not publish to {channel}.", request_id=request_id)

    # ---------------------------------------------------------------- requests

    async def subscribe(self, request: protocol.Subscribe) -> None:
        """`subscribe`: checks, then join the channel (replying `subscribed`)."""
        channel, rid = request.channel, request.id
        namespace, name = await self.resolve(channel, rid)
        if channel in self.active:
            raise AlreadySubscribed(request_id=rid)
        if len(self.active) >= self.consumer.settings["MAX_SUBSCRIPTIONS"]:
            raise LimitExceeded(request_id=rid)
        await self.check_subscribe(namespace, name, rid)
        await self.join(channel, namespace, request.recover, rid)

    async def join(self, channel: str, namespace: Namespace, recover: protocol.Position | None, rid=None) -> None:
        """Hear the channel first, then read the position, so nothing falls between; send `subscribed`.

        Publications heard while the position is read wait and go out right after
        `subscribed` (those at or below its offset are in its replay, or duplicates). The
        socket is in the channel's presence before `subscribed` goes out (a presence read
        after it sees the socket), and a failure of any step is this request's one reply.
        """
        hub = get_hub()
        self.joining[channel] = []
        change = None
        try:
            async with backing_service(rid):
                await hub.add(channel, self)
                stream = await self._read(channel, namespace, recover)
                if namespace.presence:
                    change = await presence.add(channel, self.consumer.session_id, self.user_info())
        except BaseException:
            self.joining.pop(channel, None)
            hub.discard(channel, self)
            raise
        # The client is known to have what the replay began after (until a pong says more).
        start = stream.offset - len(stream.publications)
        sub = self.active[channel] = Subscription(channel, namespace, stream.epoch, stream.offset, start)
        recovered = recover is not None and stream.complete
        if recover is not None:
            metrics.recovery(recovered, len(stream.publications))
        metrics.sent("subscribed")
        self.consumer.send_text(
            protocol.encode_with_publications(
                protocol.subscribed(rid, channel, stream.epoch, stream.offset, recovered, None), stream.publications
            )
        )
        self._replay(sub, self.joining.pop(channel, []))
        user, session = self.consumer.user, self.consumer.session_id
        self.signals.send(channel_subscribed, user=user, session=session, channel=channel)
        await self._record()
        if change is not None and namespace.join_leave:
            await presence.announce_quietly(channel, change)

    async def _record(self) -> None:
        # The session's subscriptions are known to every process from the moment they change (a resume
        # after a crash needs them); the positions in between are recorded by the node's beat.
        if self.consumer.record is not None:
            await self.consumer.record.write()

    def positions(self) -> dict[str, list]:
        """Each subscribed channel's acknowledged position, `{channel: [epoch, offset]}`: a resume replays
        after it, so that nothing a broken connection lost is missing (PROTOCOL section 3)."""
        return {channel: [sub.epoch, sub.acked] for channel, sub in self.active.items()}

    def ping_queued(self) -> None:
        """A heartbeat `ping` went into the send queue: note what it follows, unless an earlier ping is
        still unanswered (the next pong may be that one's answer, so it acknowledges only that one's)."""
        if self.pinged is None:
            self.pinged = [(sub, sub.offset) for sub in self.active.values()]

    def pong_received(self) -> None:
        """The client answered the heartbeat: it has every frame queued before that ping."""
        pinged, self.pinged = self.pinged, None
        for sub, offset in pinged or ():
            sub.acked = offset

    async def restore(self, positions: dict[str, list]) -> None:
        """A resumed session: every subscription back, each `subscribed` (no id) with what it missed.

        Rules are checked again: a channel the user may no longer read ends with `unsubscribed`
        (reason `removed`), and so does one over MAX_SUBSCRIPTIONS (reason `limit_exceeded`).
        """
        limit = self.consumer.settings["MAX_SUBSCRIPTIONS"]
        for channel, (epoch, offset) in positions.items():
            if len(self.active) >= limit:
                self.consumer.send_frame(protocol.unsubscribed(None, channel, "limit_exceeded"))
                continue
            try:
                namespace, name = resolve(channel)
                if not await allowed(namespace, self.consumer.user, name, "subscribe"):
                    self.consumer.send_frame(protocol.unsubscribed(None, channel, "removed"))
                    continue
                await self.join(channel, namespace, protocol.Position(epoch, offset))
            except RealtimeError as exc:
                logger.warning("could not restore %s for %s: %s", channel, self.consumer.session_id, exc)
                self.consumer.send_frame(protocol.unsubscribed(None, channel, INSUFFICIENT_STATE))

    async def _read(self, channel: str, namespace: Namespace, recover: protocol.Position | None) -> Slice:
        """The position, and with `recover` the replay: when it is over MAX_REPLY_BYTES, the newest
        publications that fit (incomplete: `recovered: false`), which the live stream follows without a gap."""
        engine = get_engine()
        if recover is None:
            position = await engine.position(channel, ttl=namespace.history_ttl)
            return Slice(position.epoch, position.offset, [], False)
        max_bytes = self.consumer.settings["MAX_REPLY_BYTES"]
        return await engine.since(
            channel, recover.epoch, recover.offset, ttl=namespace.history_ttl, max_bytes=max_bytes, newest=True
        )

    async def unsubscribe(self, request: protocol.Unsubscribe) -> None:
        """`unsubscribe`: leave the channel now."""
        await self.resolve(request.channel, request.id)
        if request.channel not in self.active:
            raise NotSubscribed(request_id=request.id)
        await self.leave(request.channel, dropped=False)
        self.consumer.send_frame(protocol.unsubscribed(request.id, request.channel))

    async def leave(self, channel: str, *, dropped: bool, own_presence: bool = True) -> None:
        """Forget a subscription; a dropped socket keeps its presence for the grace period.

        `own_presence=False`: a socket whose session was taken over leaves the presence
        entry (it is the session's) to the socket that holds the session now.
        """
        sub = self.active.pop(channel, None)
        if sub is None:
            return
        get_hub().discard(channel, self)
        try:
            if not dropped:
                await self._record()
            if sub.namespace.presence and own_presence:
                try:
                    if dropped:
                        await presence.drop(channel, self.consumer.session_id)
                    else:
                        change = await presence.remove(channel, self.consumer.session_id)
                        if sub.namespace.join_leave:
                            await presence.announce(channel, change)
                except Exception as exc:  # presence is advisory: its entry lapses on its own
                    logger.warning("presence update of %s on %s failed: %r", self.consumer.session_id, channel, exc)
        finally:  # the subscription is gone whatever failed above (or was cancelled)
            user, session = self.consumer.user, self.consumer.session_id
            self.signals.send(channel_unsubscribed, user=user, session=session, channel=channel)

    async def end(self, channel: str, reason: str) -> None:
        """The server ends a subscription (membership removed, state lost): push `unsubscribed` with a reason."""
        self.may_publish.pop(channel, None)
        if channel in self.active:
            await self.leave(channel, dropped=False)
            self.consumer.send_frame(protocol.unsubscribed(None, channel, reason))

    async def close(self, *, own_presence: bool = True) -> None:
        """The socket is gone: leave every channel, keeping presence for the grace period."""
        for task in self.fills:
            task.cancel()
        for channel in list(self.active):
            await self.leave(channel, dropped=True, own_presence=own_presence)

    # ---------------------------------------------------------------- delivery

    def on_publication(self, channel: str, epoch: str, offset: int, frame: str, size: int) -> bool:
        """A live publication from the hub (the hot path: no parsing, no await); True when sent."""
        sub = self.active.get(channel)
        if sub is None:
            held = self.joining.get(channel)
            if held is not None:  # subscribing: goes out after `subscribed`
                held.append((epoch, offset, frame, size))
            return False
        if self.consumer.closing:
            return False
        return self._live(sub, epoch, offset, frame, size)

    def _live(self, sub: Subscription, epoch: str, offset: int, frame: str, size: int) -> bool:
        """In order, once; a skip ahead (or a new epoch) is filled from history first."""
        if sub.held is not None:  # a gap is being filled: after it
            sub.held.append((epoch, offset, frame, size))
            return False
        if epoch == sub.epoch:
            if offset <= sub.offset:
                return False  # a duplicate, or already replayed in `subscribed`
            if offset == sub.offset + 1:
                sub.offset = offset
                self.consumer.send_text(frame, size)
                return True
        sub.held = [(epoch, offset, frame, size)]
        self._start_fill(sub)
        return False

    def on_presence(self, channel: str, frames: list[str], left: int) -> None:
        """`join`/`leave` pushes (`left` leaves, then joins) for a channel whose namespace announces them."""
        sub = self.active.get(channel)
        if sub is None or not sub.namespace.join_leave or self.consumer.closing:
            return
        for index, frame in enumerate(frames):
            metrics.sent("leave" if index < left else "join")
            self.consumer.send_text(frame)

    def on_resubscribed(self, channel: str) -> None:
        """The process's subscription to the channel broke and came back: read what was missed."""
        sub = self.active.get(channel)
        if sub is not None and sub.held is None and not self.consumer.closing:
            sub.held = []
            self._start_fill(sub)

    def on_stored(self, channel: str, position: Position | None) -> None:
        """The hub's delivery check: what the channel stored a period ago. Behind it (a lost last
        publication, another epoch, no stream any more), read history as after a reconnect."""
        sub = self.active.get(channel)
        if sub is not None and (position is None or position.epoch != sub.epoch or position.offset > sub.offset):
            self.on_resubscribed(channel)

    def _start_fill(self, sub: Subscription) -> None:
        task = asyncio.ensure_future(self.fill(sub))
        self.fills.add(task)
        task.add_done_callback(self.fills.discard)

    async def fill(self, sub: Subscription) -> None:
        """Deliver what history holds after the subscription's position, then what was held meanwhile.

        At most MAX_REPLY_BYTES of it, as any reply: a gap larger than that ends the subscription
        (`insufficient_state`), and the client's `recover` gets what fits."""
        try:
            stream = await get_engine().since(
                sub.channel, sub.epoch, sub.offset, ttl=sub.namespace.history_ttl,
                max_bytes=self.consumer.settings["MAX_REPLY_BYTES"],
            )  # fmt: skip
        except SERVICE_ERRORS as exc:  # Redis away: the client is told (insufficient_state) and recovers
            metrics.service_error(exc)
            logger.warning("history read for the gap on %s failed: %r", sub.channel, exc)
            stream = None
        except Exception:
            logger.exception("history read for the gap on %s failed", sub.channel)
            stream = None
        if self.active.get(sub.channel) is not sub:
            return  # unsubscribed meanwhile
        metrics.gap(stream is not None and stream.complete)
        held, sub.held = sub.held or [], None
        if stream is None or not stream.complete:
            await self.end(sub.channel, INSUFFICIENT_STATE)
            return
        for text in stream.publications:
            sub.offset += 1
            self.consumer.send_text(message_frame(text))
        self._replay(sub, held, len(stream.publications))

    def _replay(self, sub: Subscription, held: list[tuple[str, int, str, int]], sent: int = 0) -> None:
        """Deliver publications that waited (a join, a fill): the ones not yet sent go out now."""
        for epoch, offset, frame, size in held:
            sent += self._live(sub, epoch, offset, frame, size)  # a new skip starts another fill
        if sent:
            metrics.delivered(sent)
