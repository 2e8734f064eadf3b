"""One channel's subscription: its state, position, dedupe, events and async iteration.

The client owns the connection and sends the frames; a `Subscription` decides what a
frame means for its channel. Position rule (CLIENTS.md, centrifuge-js #425): store the
position of a publication, then emit it. A live `message` at or below the position is
dropped; one that skips an offset, or comes in another epoch, means lost state and the
client resubscribes with `recover`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .errors import OVERFLOW, RealtimeError
from .events import Callback, Emitter
from .models import (
    Position,
    PresenceEvent,
    Publication,
    SubscribedEvent,
    SubscriptionState,
    UnsubscribedEvent,
    User,
)

if TYPE_CHECKING:
    from .client import Client

EVENTS = frozenset({"subscribed", "publication", "join", "leave", "unsubscribed", "error"})

# What `on_message` asks of the client.
DELIVERED, DROPPED, RESYNC = "delivered", "dropped", "resync"

_END = object()  # ends an iterator


class Subscription:
    """The one subscription object of a channel; iterate it (`async for pub in sub`) or use `on()`."""

    def __init__(self, client: Client, channel: str, queue_size: int) -> None:
        self.channel = channel
        self.state = SubscriptionState.UNSUBSCRIBED
        self._client = client
        self._position: Position | None = None
        self._events = Emitter(EVENTS, client._dispatcher, client._report)
        self._queue_size = queue_size
        self._backlog: deque[Publication] = deque(maxlen=queue_size)  # kept while no iterator runs
        self._queues: list[_Queue] = []
        self._ended = False
        # Set by the client: whether the subscription is wanted, which subscribe is in flight
        # (its request id, or a marker), and whether that subscribe carried a position.
        self.wanted = False
        self.pending: object = None
        self.recovering = False

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} {self.state}>"

    @property
    def position(self) -> Position | None:
        """The `(epoch, offset)` of the last publication delivered (or of the subscribe reply)."""
        return self._position

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Listen to `subscribed`, `publication`, `join`, `leave`, `unsubscribed` or `error`; returns a remover."""
        return self._events.on(event, callback)

    def unsubscribe(self) -> Awaitable[None]:
        """End this subscription now (until `client.subscribe(channel)` again); never raises.

        The `unsubscribe` frame is sent at once; await the result to wait for the server's reply.
        """
        return self._client._unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[Publication]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Publication]:
        queue = _Queue(self._queue_size)
        while self._backlog:
            queue.put(self._backlog.popleft())
        if self._ended:
            queue.put(_END, force=True)
        self._queues.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if queue.dropped:
                    dropped, queue.dropped = queue.dropped, 0
                    self._error(RealtimeError(OVERFLOW, f"{self.channel}: iterator too slow, {dropped} dropped"))
                yield item
        finally:
            self._queues.remove(queue)

    # ------------------------------------------------------------ called by the client

    def start(self) -> None:
        """Mark wanted and subscribing (the client sends the frame)."""
        self.wanted = True
        self._ended = False
        self.state = SubscriptionState.SUBSCRIBING

    def suspend(self) -> None:
        """The connection dropped: a wanted subscription waits to be restored."""
        self.pending = None
        self.state = SubscriptionState.SUBSCRIBING if self.wanted else SubscriptionState.UNSUBSCRIBED

    def on_subscribed(self, frame: dict[str, Any]) -> None:
        """Apply a `subscribed` (reply or push): event first, then the replayed publications, deduped."""
        publications = frame.get("publications") or []
        epoch, offset = str(frame["epoch"]), int(frame["offset"])
        self.pending = None
        self.state = SubscriptionState.SUBSCRIBED
        recovering, self.recovering = self.recovering, False
        recovered = bool(frame.get("recovered")) and recovering
        event = SubscribedEvent(self.channel, epoch, offset, recovering, recovered, len(publications))
        self._events.emit("subscribed", event)
        for item in publications:
            pub = Publication.from_frame(item, self.channel, recovered=True)
            pos = self._position
            if pos is None or pub.epoch != pos.epoch or pub.offset > pos.offset:
                self._deliver(pub)
        pos = self._position
        if pos is None or pos.epoch != epoch or offset > pos.offset:
            self._position = Position(epoch, offset)

    def on_message(self, frame: dict[str, Any]) -> str:
        """A live publication: deliver it, drop a duplicate, or ask for a resync on a gap or new epoch."""
        if self.state is not SubscriptionState.SUBSCRIBED:
            return DROPPED
        pub = Publication.from_frame(frame, self.channel)
        pos = self._position
        if pos is not None:
            if pub.epoch != pos.epoch or pub.offset > pos.offset + 1:
                self._client._logger.info(
                    "%s: lost state (at %s:%s, got %s:%s), recovering",
                    self.channel,
                    pos.epoch,
                    pos.offset,
                    pub.epoch,
                    pub.offset,
                )
                self.state = SubscriptionState.SUBSCRIBING
                return RESYNC
            if pub.offset <= pos.offset:
                return DROPPED
        self._deliver(pub)
        return DELIVERED

    def on_presence(self, kind: str, frame: dict[str, Any]) -> None:
        """A `join` or `leave` push."""
        user = frame.get("user") or {}
        self._events.emit(kind, PresenceEvent(self.channel, User(user.get("id"), user.get("username", ""))))

    def end(self, reason: str, error: BaseException | None = None) -> None:
        """Terminal: not wanted any more; emit `error` (when given) and `unsubscribed`, end the iterators."""
        was_active = self.wanted or self.state is not SubscriptionState.UNSUBSCRIBED
        self.wanted = False
        self.pending = None
        self.recovering = False
        self.state = SubscriptionState.UNSUBSCRIBED
        self._position = None
        if error is not None:
            self._error(error)
        if was_active:
            self._events.emit("unsubscribed", UnsubscribedEvent(self.channel, reason))
        self.finish()

    def finish(self) -> None:
        """End every running iterator (the client closed, or the subscription ended)."""
        self._ended = True
        for queue in self._queues:
            queue.put(_END, force=True)

    def _error(self, error: BaseException) -> None:
        self._events.emit("error", error)

    def _deliver(self, pub: Publication) -> None:
        self._position = pub.position  # store, then emit
        self._events.emit("publication", pub)
        if self._queues:
            for queue in self._queues:
                queue.put(pub)
        else:
            self._backlog.append(pub)


class _Queue:
    """A bounded FIFO for one iterator: when full, the oldest publication is dropped and counted."""

    def __init__(self, size: int) -> None:
        self._items: deque[Any] = deque()
        self._size = size
        self._ready = asyncio.Event()
        self.dropped = 0

    def put(self, item: Any, force: bool = False) -> None:
        if not force and len(self._items) >= self._size:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Any:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
