"""Liveness of server processes ("nodes") and cleanup of the session rows they leave behind.

Every server process registers one `Node` row named `host:pid` on its first HTTP
request or WebSocket connect (`NodeMiddleware` -> `ensure_started`) and runs one
background task that, every NODE_HEARTBEAT seconds, beats (`_beat`: three UPDATEs, so a
socket's `last_seen` stays fresh without a write per message: `last_seen` on its `Node` row,
`last_seen` on the `Connection` rows of its live sockets, in statements of 500, and the close
of its open rows that no live socket refreshed for three beats), and every CLEANUP_INTERVAL
seconds runs `cleanup()`.

Timing guarantee: a process killed at time K (kill -9, OOM, power loss) beat last
at some time <= K, so its rows count as stale after K + 3 * NODE_HEARTBEAT; the next
cleanup of any live process closes them (code 1006, reason "stale"), i.e. by
K + 3 * NODE_HEARTBEAT + CLEANUP_INTERVAL (20 s with the defaults 5 s and 5 s), as
long as one process is alive or `manage.py cleanup_sessions` runs. A graceful stop
under daphne closes its own rows at once with 1001 "shutdown" (`realtime.server.daphne`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from realtime.core.protocol import CloseCode
from realtime.models import Connection, Node
from realtime.sessions import rows as sessions
from realtime.support.advisory import advisory
from realtime.support.conf import realtime_settings
from realtime.support.state import current

logger = logging.getLogger(__name__)

STALE_BEATS = 3  # missed beats after which a node is dead: tolerates one slow beat or a short DB hiccup
STALE_CODE = 1006  # WebSocket "abnormal closure": the socket ended without a close we saw
STALE_REASON = "stale"
SHUTDOWN_CODE = CloseCode.GOING_AWAY
STOP_TIMEOUT = 2.0  # seconds `stop()` waits for the cancelled beat task
SHUTDOWN_TIMEOUT = 10.0  # seconds the reactor waits for `shutdown()` before it stops anyway
_WAKE_SLACK = 0.005  # asyncio may wake a timer up to one clock tick early; don't loop for that

# Called once the process has registered, on its loop: the server glue adds to it (`realtime.server.daphne`).
START_HOOKS: list[Callable[[], object]] = []


@dataclass(eq=False)
class _Runner:
    """This process's registration on one event loop."""

    loop: asyncio.AbstractEventLoop
    name: str
    ready: bool = False  # registered and beating (or shut down): the fast path of ensure_started
    starting: asyncio.Task | None = None
    task: asyncio.Task | None = None


def serving() -> bool:
    """Whether this process registered as a node: it serves HTTP or sockets (not a shell or a command)."""
    return current().serving


def node_name() -> str:
    """This process's node name, `"<hostname>:<pid>"`, computed at call time (a fork gets its own)."""
    # Node.hostname holds 150 characters; the name must stay parseable by rpartition(":").
    return f"{socket.gethostname()[:150]}:{os.getpid()}"


def stale_cutoff(now: datetime | None = None) -> datetime:
    """The time before which a `last_seen` means dead: 3 * NODE_HEARTBEAT before `now`."""
    now = now or timezone.now()
    return now - timedelta(seconds=STALE_BEATS * realtime_settings.NODE_HEARTBEAT)


# ---------------------------------------------------------------- cleanup (sync)


@dataclass(frozen=True)
class CleanupResult:
    """What one `cleanup()` did, in rows."""

    dead_nodes: int = 0  # Node rows deleted because their beat stopped
    stale_closed: int = 0  # open Connection rows of those nodes, closed 1006 "stale"
    orphans_closed: int = 0  # open rows of a node that never registered, closed the same way
    purged: int = 0  # closed rows deleted after SESSION_RETENTION

    @property
    def closed(self) -> int:
        """All connection rows closed as stale."""
        return self.stale_closed + self.orphans_closed


def cleanup(now: datetime | None = None, *, retention: float | None = None) -> CleanupResult:
    """Close the open rows of dead nodes, delete those nodes, purge old closed rows.

    Never touches this process's own node. `retention` (seconds) overrides SESSION_RETENTION.
    """
    now = now or timezone.now()
    cutoff = stale_cutoff(now)
    if retention is None:
        retention = realtime_settings.SESSION_RETENTION
    if retention < 0:
        raise ValueError(f"retention must be >= 0 seconds, got {retention!r}")
    own = node_name()
    stale = {"closed_at": now, "close_code": STALE_CODE, "close_reason": STALE_REASON}
    with transaction.atomic():
        dead = Node.objects.filter(last_seen__lt=cutoff).exclude(name=own)
        # Close before deleting: should we die in between, step (b) still finds these rows.
        stale_closed = Connection.objects.filter(node__in=dead.values("name"), closed_at__isnull=True).update(**stale)
        dead_nodes = dead.delete()[1].get(Node._meta.label, 0)
        # (b) A process that died before it registered (or after its row was deleted).
        orphans_closed = (
            Connection.objects.filter(closed_at__isnull=True, last_seen__lt=cutoff)
            .exclude(node=own)
            .exclude(node__in=Node.objects.values("name"))
            .update(**stale)
        )
        purged = (
            Connection.objects.filter(closed_at__lt=now - timedelta(seconds=retention))
            .delete()[1]
            .get(Connection._meta.label, 0)
        )
    result = CleanupResult(dead_nodes, stale_closed, orphans_closed, purged)
    if dead_nodes or result.closed or purged:
        logger.info("realtime cleanup: %s", result)
    return result


def _register(name: str) -> None:
    """Create or refresh this process's Node row; close what a previous process of the same name left."""
    now = timezone.now()
    hostname, _, pid = name.rpartition(":")
    with transaction.atomic():
        _, created = Node.objects.update_or_create(
            name=name, defaults={"hostname": hostname, "pid": int(pid), "last_seen": now, "started_at": now}
        )
        # A restarted container often gets the same hostname and pid: rows opened before this
        # process started are not ours, and our beat would otherwise keep them open for ever.
        left = Connection.objects.filter(node=name, closed_at__isnull=True, opened_at__lt=current().started_at).update(
            closed_at=now, close_code=STALE_CODE, close_reason=STALE_REASON
        )
    if left:
        logger.warning("realtime node %s: closed %d row(s) left open by a previous process of this name", name, left)
    logger.info("realtime node %s registered (%s)", name, "new" if created else "row reused")


_PKS_PER_UPDATE = 500  # below every backend's limit on parameters in one statement


def _beat(name: str, live: frozenset[int] = frozenset()) -> None:
    """One liveness beat, three UPDATEs: `last_seen` of the Node row, `last_seen` of the rows of the
    sockets in `live` (this process's live sockets; one statement per 500, none without any), and the
    close (1006, "stale") of this node's open rows that no live socket refreshed for three beats.

    Only a socket whose consumer still runs keeps its row open: one that ended without
    recording its close (cancelled, or its `on_disconnect` failed) would otherwise show as
    open in the admin for as long as the process lives.
    """
    now = timezone.now()
    if not Node.objects.filter(name=name).update(last_seen=now):
        # Another process's cleanup took us for dead (a long stall or DB outage): come back.
        logger.warning("realtime node %s: row missing (removed as stale?); registering again", name)
        _register(name)
    own = Connection.objects.filter(node=name, closed_at__isnull=True)
    pks = sorted(live)
    for start in range(0, len(pks), _PKS_PER_UPDATE):
        own.filter(pk__in=pks[start : start + _PKS_PER_UPDATE]).update(last_seen=now)
    # Rows inserted since `live` was taken have a fresh `last_seen`: only abandoned ones are this old.
    phantoms = own.filter(last_seen__lt=stale_cutoff(now)).update(
        closed_at=now, close_code=STALE_CODE, close_reason=STALE_REASON
    )
    if phantoms:
        logger.warning("realtime node %s: closed %d row(s) of sockets that ended without a close", name, phantoms)


def _retire(name: str, reason: str) -> int:
    """Close this node's open rows with 1001 and delete its Node row; returns rows closed."""
    now = timezone.now()
    with transaction.atomic():
        closed = Connection.objects.filter(node=name, closed_at__isnull=True).update(
            closed_at=now, last_seen=now, close_code=int(SHUTDOWN_CODE), close_reason=reason[:64]
        )
        Node.objects.filter(name=name).delete()
    return closed


# ---------------------------------------------------------------- the background task


async def _guarded(what: str, func: Any, *args: Any, failing: set[str]) -> None:
    """Run one ORM step in a thread; log a failure (traceback once per streak) and carry on."""
    try:
        await database_sync_to_async(func)(*args)
    except Exception:
        if what in failing:
            logger.warning("realtime node: %s failed again; retrying next period", what)
        else:
            failing.add(what)
            logger.exception("realtime node: %s failed; retrying next period", what)
    else:
        if what in failing:
            failing.discard(what)
            logger.info("realtime node: %s works again", what)


async def _touch_engine(failing: set[str]) -> None:
    """Extend this process's presence entries and connection slots (so a dead process's lapse)
    and record its sessions' positions."""
    from realtime.pubsub.presence import touch_local as touch_presence
    from realtime.sessions.records import touch_local as touch_sessions
    from realtime.sessions.slots import touch_local as touch_slots

    await advisory("connection slots", touch_slots, failing)
    await advisory("presence touch", touch_presence, failing)
    await advisory("session positions", touch_sessions, failing)


def _next(deadline: float, period: float, now: float) -> float:
    # Keep a steady cadence, but after a slow step start afresh rather than catch up in a burst.
    deadline += period
    return deadline if deadline > now else now + period


async def _run(name: str) -> None:
    """Beat every NODE_HEARTBEAT seconds and clean up every CLEANUP_INTERVAL seconds, until cancelled."""
    from realtime.sessions.live import live_row_pks

    loop = asyncio.get_running_loop()
    failing: set[str] = set()
    next_beat = loop.time() + realtime_settings.NODE_HEARTBEAT
    next_cleanup = loop.time() + realtime_settings.CLEANUP_INTERVAL
    while True:
        # Every period is >= 0.1 s (conf minimums) and deadlines always move forward: no spin.
        await asyncio.sleep(max(0.0, min(next_beat, next_cleanup) - loop.time()))
        now = loop.time() + _WAKE_SLACK
        if now >= next_beat:
            await _guarded("beat", _beat, name, live_row_pks(), failing=failing)
            await _touch_engine(failing)
            next_beat = _next(next_beat, realtime_settings.NODE_HEARTBEAT, loop.time())
        if now >= next_cleanup:
            await _guarded("cleanup", cleanup, failing=failing)
            next_cleanup = _next(next_cleanup, realtime_settings.CLEANUP_INTERVAL, loop.time())


async def _start(runner: _Runner) -> None:
    # A database down at start-up must not fail the request: the beat registers again later.
    await _guarded("register", _register, runner.name, failing=set())
    runner.task = runner.loop.create_task(_run(runner.name), name=f"realtime-node {runner.name}")
    for hook in START_HOOKS:
        hook()
    runner.ready = True


def _cancel_elsewhere(loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
    # A task belongs to its loop: cancel it from there. A closed loop has no running task left.
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(task.cancel)


async def ensure_started() -> None:
    """Register this process as a node and start its beat task, once per process and event loop.

    After the first call this is a check of one flag. Database errors are logged, not raised.
    """
    node = current()
    loop = asyncio.get_running_loop()
    runner = node.runner
    if runner is not None and runner.loop is loop:
        if runner.ready:
            return
    else:
        if runner is not None and runner.task is not None:
            # Started on another loop that may still run: one beat task per process is enough.
            _cancel_elsewhere(runner.loop, runner.task)
        runner = node.runner = _Runner(loop=loop, name=node_name())
        runner.starting = loop.create_task(_start(runner))
    # Concurrent first callers all wait for the one registration; shield: a cancelled caller
    # (a client that went away) must not cancel it for the others.
    await asyncio.shield(runner.starting)


async def stop() -> None:
    """Stop this process's background task without touching the database; `ensure_started` starts anew."""
    node = current()
    runner, node.runner = node.runner, None
    if runner is None:
        return
    tasks = [task for task in (runner.starting, runner.task) if task is not None and not task.done()]
    if runner.loop is not asyncio.get_running_loop():
        for task in tasks:
            _cancel_elsewhere(runner.loop, task)
        return
    for task in tasks:
        task.cancel()
    # Bounded: a beat step stuck in a saturated Redis pool or the database thread must not
    # hold a shutdown past its own timeout (the task ends on its own once cancelled).
    if tasks:
        await asyncio.wait(tasks, timeout=STOP_TIMEOUT)


async def shutdown(reason: str = "shutdown") -> int:
    """Retire this process: stop the beat, close its open rows (1001, `reason`), delete its Node row.

    Returns the number of rows closed. Later `ensure_started` calls on this loop do nothing.
    """
    await stop()
    name = node_name()
    # Mark this loop as done, so a request that arrives during shutdown does not register again.
    current().runner = _Runner(loop=asyncio.get_running_loop(), name=name, ready=True)
    # Rows are written in the background: what is queued lands first, so no row of ours
    # is inserted (open) after the retire below.
    await sessions.flush()
    closed = await database_sync_to_async(_retire)(name, reason)
    logger.info("realtime node %s shut down: closed %d session row(s) with %d", name, closed, SHUTDOWN_CODE)
    return closed


class NodeMiddleware:
    """ASGI middleware: registers this process as a node on its first HTTP request or WebSocket connect.

    It also answers the ASGI lifespan protocol (uvicorn, hypercorn; daphne has none and uses
    the Twisted trigger above): the node registers at start-up, and at shutdown, which
    uvicorn sends once its sockets are closed (1012) and their consumers have ended,
    `shutdown()` retires it, so its rows are closed at once rather than by a cleanup.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        await ensure_started()
        return await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await ensure_started()  # logs, never raises: a database down at start registers later
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await asyncio.wait_for(shutdown(), SHUTDOWN_TIMEOUT)
                except Exception:
                    logger.exception("realtime node %s: shutdown failed; the cleanup will close its rows", node_name())
                await send({"type": "lifespan.shutdown.complete"})
                return
