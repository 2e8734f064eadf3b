"""Callbacks: registration, isolation, and one ordered runner for async callbacks.

Sync callbacks run at once, in the reader, in event order. An async callback's
coroutine goes to the client's `Dispatcher`, which runs them one at a time in the
order they were emitted, so a slow callback (or one that awaits a request) never
blocks the reader. A callback that raises is logged and reported to the client's
`error` callbacks; it never stops delivery.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

Callback = Callable[[Any], Any]
ErrorReporter = Callable[[BaseException, str], None]


class Dispatcher:
    """Runs async callbacks one at a time, in order, on one supervised task."""

    def __init__(self, report: ErrorReporter) -> None:
        self._report = report
        self._queue: asyncio.Queue[tuple[str, Awaitable[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def schedule(self, event: str, awaitable: Awaitable[Any]) -> None:
        """Queue an async callback's awaitable; start the runner when needed."""
        self._queue.put_nowait((event, awaitable))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="realtime-callbacks")

    async def _run(self) -> None:
        while True:
            event, awaitable = await self._queue.get()
            try:
                await awaitable
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # isolate: a callback never stops the others
                self._report(exc, event)
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        """Let the queued callbacks finish (up to `timeout` s), then stop the runner.

        Does nothing when called from a callback (it would wait for itself).
        """
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            pass
        task.cancel()
        await asyncio.wait({task})
        while not self._queue.empty():  # left over after a timeout: close them unawaited
            _, awaitable = self._queue.get_nowait()
            self._queue.task_done()
            if hasattr(awaitable, "close"):
                awaitable.close()


class Emitter:
    """Named events, each with its list of callbacks (`on` returns a remover)."""

    def __init__(self, events: frozenset[str], dispatcher: Dispatcher, report: ErrorReporter) -> None:
        self._events = events
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in events}
        self._dispatcher = dispatcher
        self._report = report

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Call `callback(value)` on each `event`; returns a function that removes it again."""
        if event not in self._events:
            raise ValueError(f"Unknown event {event!r}; one of {sorted(self._events)}.")
        if not callable(callback):
            raise TypeError("callback must be callable")
        callbacks = self._callbacks[event]
        callbacks.append(callback)

        def remove() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    def emit(self, event: str, value: Any) -> None:
        """Call every callback of `event` with `value`, isolating failures."""
        for callback in list(self._callbacks[event]):
            try:
                result = callback(value)
            except Exception as exc:
                self._report(exc, event)
                continue
            if inspect.isawaitable(result):
                self._dispatcher.schedule(event, result)
