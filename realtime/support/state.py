"""The Node: everything this process holds for as long as it runs, in one object it owns.

Centrifuge's `Node` owns its hub, broker and presence manager; here the parts are the engine
(one per event loop, as redis-py's asyncio clients belong to the loop that made them), the
hub that fans publications out to this process's sockets, the session-row writer, the live
sockets, the presence and slot trackers, the resumable records, the admission gate, the
channel layer, the beat. Each part's own module says what it is and how it is made; the Node
makes it on first use and keeps it:

    def live_sockets() -> LiveSockets:
        return current().part(LiveSockets)

A key is the part's class, or a tuple that also names what the part was made from (the Redis
URL and prefix of an engine: other settings, another part). `current()` is the process's Node,
made lazily; a forked child starts with a new one (a parent's sockets, loops and clients are
not its own). Tests make a fresh one (`realtime.testing.fresh_node()`), so no test sees
another's state, and nothing resets module globals.

This module is bookkeeping only: it imports no other part of the app, so every layer may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import weakref
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any, TypeVar

from django.utils import timezone

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Node:
    """One process's state: its parts, made on first use, one per Node (or per Node and event loop)."""

    def __init__(self) -> None:
        #: When this Node began: session rows of this process's name opened before it are a previous process's.
        self.started_at: datetime = timezone.now()
        #: This process's registration as a server node on its event loop (`realtime.runtime.node`), or None.
        self.runner: Any = None
        #: What was said once per process already (warnings that would repeat on every call).
        self.said: set[str] = set()
        self._parts: dict[Hashable, Any] = {}
        self._loop_parts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def serving(self) -> bool:
        """Whether this process registered as a server node: it serves HTTP or sockets (not a shell, a command)."""
        return self.runner is not None

    def part(self, key: Hashable, factory: Callable[[], T] | None = None) -> T:
        """The part under `key`, made by `factory()` (or `key()`, for a class) the first time."""
        try:
            return self._parts[key]
        except KeyError:
            made = self._parts[key] = (factory or key)()  # type: ignore[operator]
            return made

    def loop_part(self, key: Hashable, factory: Callable[[], T] | None = None) -> T:
        """The part under `key` for the running event loop: one per loop, gone with the loop."""
        loop = asyncio.get_running_loop()
        parts = self._loop_parts.get(loop)
        if parts is None:
            parts = self._loop_parts[loop] = {}
        try:
            return parts[key]
        except KeyError:
            made = parts[key] = (factory or key)()  # type: ignore[operator]
            return made

    def put(self, key: Hashable, part: Any) -> None:
        """Make `part` the part under `key` (a test's own channel layer, say)."""
        self._parts[key] = part

    def peek(self, key: Hashable) -> Any:
        """The process-wide part under `key` if it was made, else None (made by nobody's asking)."""
        return self._parts.get(key)

    def peek_loop(self, key: Hashable, loop: asyncio.AbstractEventLoop | None = None) -> Any:
        """The part under `key` of `loop` (default: the running one) if it was made, else None."""
        parts = self._loop_parts.get(loop or asyncio.get_running_loop())
        return None if parts is None else parts.get(key)

    def drop(self, key: Hashable) -> Any:
        """Forget the process-wide part under `key` (its next use makes a new one); returns it, or None."""
        return self._parts.pop(key, None)

    async def aclose(self) -> None:
        """Close what this Node made on the running loop and process-wide, newest first; errors are logged.

        A part is closed by its `aclose()` or `close()` (awaited when it is a coroutine function).
        """
        loop_parts = self._loop_parts.pop(asyncio.get_running_loop(), {})
        for part in [*reversed(loop_parts.values()), *reversed(self._parts.values())]:
            close = getattr(part, "aclose", None) or getattr(part, "close", None)
            if close is None:
                continue
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("closing %r failed", part)
        self._parts.clear()


_current: Node | None = None


def current() -> Node:
    """This process's Node (made on first use)."""
    global _current
    node = _current
    if node is None:
        node = _current = Node()
    return node


def replace(node: Node | None) -> Node | None:
    """Make `node` this process's Node (None: a new one on next use); returns the one it replaces."""
    global _current
    previous, _current = _current, node
    return previous


@contextlib.contextmanager
def using(node: Node):
    """Run a block with `node` as this process's Node, then put the previous one back."""
    previous = replace(node)
    try:
        yield node
    finally:
        replace(previous)


os.register_at_fork(after_in_child=lambda: replace(None))
