"""One channel's subscription as the application sees it: its events and async iteration.

Its state and position are the session core's (`channels.Channel`: what a frame means for
the channel, dedupe, the position rule); the client hands a `Subscription` what the core
emits for its channel (`emit`, `deliver`, `finish`) and it runs the callbacks and feeds
the iterators.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .channels import Channel
from .errors import OVERFLOW, RealtimeError
from .events import Callback, Dispatcher, Emitter, ErrorReporter
from .models import Position, Publication, SubscriptionState

EVENTS = frozenset({"subscribed", "publication", "join", "leave", "unsubscribed", "error"})

_END = object()  # ends an iterator


class Subscription:
    """The one subscription object of a channel; iterate it (`async for pub in sub`) or use `on()`."""

    def __init__(
        self,
        core: Channel,
        unsubscribe: Callable[[], Awaitable[None]],
        dispatcher: Dispatcher,
        report: ErrorReporter,
        queue_size: int,
    ) -> None:
        self.channel = core.name
        self._core = core
        self._unsubscribe = unsubscribe
        self._events = Emitter(EVENTS, dispatcher, report)
        self._queue_size = queue_size
        self._backlog: deque[Publication] = deque(maxlen=queue_size)  # kept while no iterator runs
        self._queues: list[_Queue] = []

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} {self.state}>"

    @property
    def state(self) -> SubscriptionState:
        """`unsubscribed`, `subscribing` or `subscribed`."""
        return self._core.state

    @property
    def position(self) -> Position | None:
        """The `(epoch, offset)` of the last publication delivered (or of the subscribe reply)."""
        return self._core.position

    @property
    def wanted(self) -> bool:
        """Whether the application wants it (subscribed and not unsubscribed since)."""
        return self._core.wanted

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Listen to `subscribed`, `publication`, `join`, `leave`, `unsubscribed` or `error`; returns a remover."""
        return self._events.on(event, callback)

    def unsubscribe(self) -> Awaitable[None]:
        """End this subscription now (until `client.subscribe(channel)` again); never raises.

        The `unsubscribe` frame is sent at once; await the result to wait for the server's reply.
        """
        return self._unsubscribe()

    def __aiter__(self) -> AsyncIterator[Publication]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Publication]:
        queue = _Queue(self._queue_size)
        while self._backlog:
            queue.put(self._backlog.popleft())
        if self.state is SubscriptionState.UNSUBSCRIBED:  # ended, or the client closed
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

    def emit(self, event: str, value: Any) -> None:
        """Run the callbacks of `event` (the core's `Emit` for this channel)."""
        self._events.emit(event, value)

    def deliver(self, pub: Publication) -> None:
        """A publication (its position already stored): the callbacks, then every iterator or the backlog."""
        self._events.emit("publication", pub)
        if self._queues:
            for queue in self._queues:
                queue.put(pub)
        else:
            self._backlog.append(pub)

    def finish(self) -> None:
        """End every running iterator (the client closed, or the subscription ended)."""
        for queue in self._queues:
            queue.put(_END, force=True)

    def _error(self, error: BaseException) -> None:
        self._events.emit("error", error)


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
