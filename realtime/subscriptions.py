"""A connection's subscriptions: subscribe, deliver in order, fill gaps, leave.

The channel layer is a transport, not a store: it may drop or repeat. Each
subscription remembers the last offset delivered; a live message at exactly the
next offset goes out as is (the pre-serialised frame, no parsing), an older one is
a duplicate and dropped, and one that skips ahead is preceded by the missing
publications read from history. When history cannot fill the gap (trimmed, or a
new epoch after lost data) the subscription ends with `unsubscribed` reason
`insufficient_state`: the client resubscribes with `recover` and learns
`recovered: false`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import metrics, presence, protocol
from .engine import Slice, get_engine
from .exceptions import (
    AlreadySubscribed,
    LimitExceeded,
    NotSubscribed,
    PermissionDenied,
    RealtimeError,
    backing_service,
    with_id,
)
from .namespaces import Namespace, allowed, check_access, resolve
from .publish import channel_group, message_frame

if TYPE_CHECKING:
    from .consumers import RealtimeConsumer

logger = logging.getLogger(__name__)

INSUFFICIENT_STATE = "insufficient_state"


@dataclass(slots=True)
class Subscription:
    """One channel this connection receives: the last position delivered."""

    channel: str
    namespace: Namespace
    epoch: str
    offset: int


class Subscriptions:
    """The subscriptions of one connection, and publish permissions it has already checked."""

    def __init__(self, consumer: RealtimeConsumer) -> None:
        self.consumer = consumer
        self.active: dict[str, Subscription] = {}
        self.may_publish: dict[str, bool] = {}

    def user_info(self) -> dict[str, Any]:
        user = self.consumer.user
        return {"id": user.pk, "username": user.get_username()}

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
        """Join the channel's group first, then read the position, so nothing falls between; send `subscribed`.

        The socket is in the channel's presence before `subscribed` goes out (a presence read
        after it sees the socket), and a failure of either step is this request's one reply.
        """
        layer = self.consumer.channel_layer
        await layer.group_add(channel_group(channel), self.consumer.channel_name)
        change = None
        try:
            async with backing_service(rid):
                stream = await self._read(channel, namespace, recover)
                if namespace.presence:
                    change = await presence.add(channel, self.consumer.session_id, self.user_info())
        except BaseException:
            await layer.group_discard(channel_group(channel), self.consumer.channel_name)
            raise
        self.active[channel] = Subscription(channel, namespace, stream.epoch, stream.offset)
        recovered = recover is not None and stream.complete
        if recover is not None:
            metrics.recovery(recovered, len(stream.publications))
        metrics.sent("subscribed")
        self.consumer.send_text(
            protocol.encode_with_publications(
                protocol.subscribed(rid, channel, stream.epoch, stream.offset, recovered, None), stream.publications
            )
        )
        await self._record()
        if change is not None and namespace.join_leave:
            await presence.announce_quietly(channel, change)

    async def _record(self) -> None:
        # The session's subscriptions are known to every process from the moment they change (a resume
        # after a crash needs them); the positions in between are recorded by the node's beat.
        if self.consumer.record is not None:
            await self.consumer.record.write()

    def positions(self) -> dict[str, list]:
        """Each subscribed channel's last delivered position, `{channel: [epoch, offset]}` (for a resume)."""
        return {channel: [sub.epoch, sub.offset] for channel, sub in self.active.items()}

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
        engine = get_engine()
        if recover is None:
            position = await engine.position(channel, ttl=namespace.history_ttl)
            return Slice(position.epoch, position.offset, [], False)
        return await engine.since(channel, recover.epoch, recover.offset, ttl=namespace.history_ttl)

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
        await self.consumer.channel_layer.group_discard(channel_group(channel), self.consumer.channel_name)
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

    async def end(self, channel: str, reason: str) -> None:
        """The server ends a subscription (membership removed, state lost): push `unsubscribed` with a reason."""
        self.may_publish.pop(channel, None)
        if channel in self.active:
            await self.leave(channel, dropped=False)
            self.consumer.send_frame(protocol.unsubscribed(None, channel, reason))

    async def close(self, *, own_presence: bool = True) -> None:
        """The socket is gone: leave every channel, keeping presence for the grace period."""
        for channel in list(self.active):
            await self.leave(channel, dropped=True, own_presence=own_presence)

    # ---------------------------------------------------------------- delivery

    async def deliver(self, event: dict[str, Any]) -> None:
        """A live publication from the channel layer: in order, once, gaps filled from history."""
        sub = self.active.get(event["channel"])
        if sub is None:
            return  # unsubscribed meanwhile
        offset = event["offset"]
        if event["epoch"] == sub.epoch:
            if offset <= sub.offset:
                return  # a duplicate, or already replayed in `subscribed`
            if offset == sub.offset + 1:
                sub.offset = offset
                self.consumer.send_text(event["frame"])
                metrics.delivered(1, event.get("ts"))
                return
        await self.fill(sub, event)

    async def fill(self, sub: Subscription, event: dict[str, Any]) -> None:
        """Deliver what history holds after the subscription's position (the live message included)."""
        try:
            stream = await get_engine().since(sub.channel, sub.epoch, sub.offset, ttl=sub.namespace.history_ttl)
        except Exception:
            logger.exception("history read for the gap on %s failed", sub.channel)
            stream = None
        metrics.gap(stream is not None and stream.complete)
        if stream is None or not stream.complete:
            await self.end(sub.channel, INSUFFICIENT_STATE)
            return
        for text in stream.publications:
            sub.offset += 1
            self.consumer.send_text(message_frame(text))
        metrics.delivered(len(stream.publications))

    def presence_event(self, event: dict[str, Any]) -> None:
        """`join`/`leave` pushes for a subscribed channel whose namespace announces them."""
        sub = self.active.get(event["channel"])
        if sub is None or not sub.namespace.join_leave:
            return
        for user in event["left"]:
            self.consumer.send_frame(protocol.leave(sub.channel, user))
        for user in event["joined"]:
            self.consumer.send_frame(protocol.join(sub.channel, user))
