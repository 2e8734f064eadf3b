"""What daphne needs to serve this protocol; `install()` patches `daphne.server.Server`.

1. Close codes 1001 and 1011, and close reasons. autobahn (daphne's WebSocket layer)
   refuses any application close code but 1000 and 3000-4999, while PROTOCOL section 7
   uses 1001 (going away) and 1011 (internal error), and daphne drops the ASGI close's
   `reason`: such close frames are sent with autobahn's lower-level `sendCloseFrame`.
2. Shutdown. The accepted sockets are tracked so that a shutdown can wait for
   their close handshakes (`wait_closed`), and once the process has registered as a node
   the reactor's "before shutdown" phase runs the node's `shutdown()` (`install_shutdown_hook`).
   The closing handshake may wait CLOSE_HANDSHAKE_TIMEOUT seconds instead of
   autobahn's 1 s: a client cut off as too slow (4013) has megabytes in kernel
   buffers before the `disconnect` frame, and after 1 s autobahn would reset the
   connection, so the client would never learn why it was closed.
3. Backpressure: `await send(...)` of a WebSocket frame waits while the socket's
   write buffer is full.

ASGI has no flow control, and daphne's `send` returns at once: a client that
does not read would make Twisted buffer without bound. With this in place the
consumer's writer task (`realtime.socket.outbox`) waits instead, the consumer's own
bounded queue fills, and a slow client is cut off with 4013 (PROTOCOL section 8).

How: Twisted pauses a transport's registered streaming producer when its buffer
goes over `bufferSize` (64 KiB) and resumes it once drained. We put a small
producer in front of whatever daphne registered (its HTTP channel), forward both
calls to it, and wake the waiting writers on resume or when the connection is lost.
Other ASGI servers (uvicorn) apply backpressure in `send` themselves; this module
does nothing for them.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import weakref
from typing import Any

from realtime.runtime import node
from realtime.support.state import current

logger = logging.getLogger(__name__)


class DrainWatcher:
    """An IPushProducer in front of the transport's own producer that wakes writers on drain."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.waiters: list[asyncio.Future] = []

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's interface
        if self.inner is not None:
            self.inner.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802
        if self.inner is not None:
            self.inner.resumeProducing()
        self._wake()

    def stopProducing(self) -> None:  # noqa: N802
        if self.inner is not None:
            self.inner.stopProducing()
        self._wake()

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def watch(transport: Any) -> DrainWatcher:
    """The transport's DrainWatcher, put in place on first use."""
    producer = getattr(transport, "producer", None)
    if isinstance(producer, DrainWatcher):
        return producer
    watcher = DrainWatcher(producer)
    if producer is None:
        transport.registerProducer(watcher, True)
    else:
        # keep daphne's producer registered (streaming) but behind ours
        transport.producer = watcher
    return watcher


async def wait_writable(protocol: Any) -> None:
    """Wait while the protocol's transport has more buffered than it wants."""
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return
    watcher = watch(transport)
    while getattr(transport, "producerPaused", False) and not getattr(transport, "disconnected", True):
        waiter = asyncio.get_running_loop().create_future()
        watcher.waiters.append(waiter)
        await waiter


CLOSE_HANDSHAKE_TIMEOUT = 30.0

def accepted() -> weakref.WeakSet:
    """The WebSocket protocols this process accepted, so a shutdown can wait for their close (a Node part)."""
    return current().part((__name__, "accepted"), weakref.WeakSet)


def _is_closed(protocol: Any) -> bool:
    transport = getattr(protocol, "transport", None)
    return transport is None or bool(getattr(transport, "disconnected", True))


async def wait_closed(timeout: float) -> int:
    """Wait (at most `timeout` s) until every accepted socket of this process has closed.

    At shutdown the consumers send `disconnect` 1001 and a close frame; Twisted drops
    every connection right after the "before shutdown" phase, so the phase waits here
    for the clients to complete the close handshake. Returns how many were still open.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        open_ = [protocol for protocol in list(accepted()) if not _is_closed(protocol)]
        if not open_ or loop.time() >= deadline:
            return len(open_)
        await asyncio.sleep(0.05)


def install() -> bool:
    """Patch daphne's `Server.handle_reply` once; False when daphne is not installed.

    Also: once this process registers as a node, a Twisted reactor (daphne's) runs the node's
    shutdown before it stops (`install_shutdown_hook`; under other servers it finds no reactor).
    """
    if install_shutdown_hook not in node.START_HOOKS:
        node.START_HOOKS.append(install_shutdown_hook)
    try:
        from daphne.server import Server
    except ImportError:  # pragma: no cover - daphne is a dependency
        return False
    if getattr(Server.handle_reply, "backpressure", False):
        return True
    original = Server.handle_reply

    async def handle_reply(self, protocol, message):
        kind = message.get("type")
        code = message.get("code")
        if kind == "websocket.close" and code is not None:
            reason = message.get("reason") or ""
            refused_by_autobahn = code != 1000 and not 3000 <= code <= 4999
            if protocol.state == protocol.STATE_OPEN and (reason or refused_by_autobahn):
                protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode() or None, isReply=False)
                return
            if refused_by_autobahn:
                return
        await original(self, protocol, message)
        if kind == "websocket.send":
            await wait_writable(protocol)
        elif kind == "websocket.accept":
            accepted().add(protocol)
            protocol.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT

    handle_reply.backpressure = True
    Server.handle_reply = handle_reply
    return True


# ---------------------------------------------------------------- the reactor's shutdown

# Which process put the trigger into its reactor: a fact about the reactor (Twisted's, one per process), not a
# part of the Node; a fresh Node must not add a second trigger.
_hook_pid: int | None = None


async def _shutdown_quietly() -> None:
    # Runs while the reactor stops: a failure must be logged, and must not hold the stop for ever.
    try:
        # The consumers were just cancelled and are saying goodbye (1001): let the
        # clients complete the close before Twisted drops every connection.
        # (daphne cancels its applications too, but its kill_all_applications can stop
        # at a KeyError on a kept-alive HTTP connection, so we do not rely on it.)
        from realtime.sessions.live import say_going_away

        if say_going_away():
            await wait_closed(node.SHUTDOWN_TIMEOUT / 2)
        await asyncio.wait_for(node.shutdown(), node.SHUTDOWN_TIMEOUT)
    except Exception:
        logger.exception("realtime node %s: shutdown failed; the cleanup will close its rows", node.node_name())


def _before_reactor_shutdown() -> Any:
    """Twisted "before shutdown" trigger: a Deferred that fires when `shutdown()` has run."""
    from twisted.internet import defer

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a reactor not driven by asyncio: daphne never runs one
        logger.warning("realtime node %s: no asyncio loop at reactor shutdown; rows left to cleanup", node.node_name())
        return None
    # A fresh context: SIGTERM arrives inside whatever task was running, and if that task
    # was in a database call, asgiref's copied context would refuse our own ("would deadlock").
    return defer.Deferred.fromFuture(loop.create_task(_shutdown_quietly(), context=contextvars.Context()))


def install_shutdown_hook() -> bool:
    """Under Twisted (daphne, daphne's runserver) run `shutdown()` before the reactor stops; once per process.

    Returns whether a hook is installed. Other servers (uvicorn, ...) get none: their rows are
    closed by a live process's cleanup, exactly as after a crash.
    """
    global _hook_pid
    if _hook_pid == os.getpid():
        return True
    # Only look at a reactor someone already installed: importing it here would install the default one.
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return False
    reactor.addSystemEventTrigger("before", "shutdown", _before_reactor_shutdown)
    _hook_pid = os.getpid()
    return True
