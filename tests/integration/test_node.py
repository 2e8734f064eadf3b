"""Node liveness, the beat task, cleanup, graceful shutdown and the cleanup_sessions command."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sys
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connections
from django.utils import timezone

from realtime.models import Connection, Node
from realtime.runtime import node
from realtime.server import daphne
from realtime.support.state import current
from tests.conftest import override_realtime

pytestmark = [pytest.mark.integration]

FAST = {"NODE_HEARTBEAT": 0.2, "CLEANUP_INTERVAL": 0.2}
WAIT = 5.0  # the most any poll waits for the database to change: a limit, never a measurement


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def make_node(name: str, last_seen_ago: float = 0) -> Node:
    hostname, _, pid = name.rpartition(":")
    return Node.objects.create(name=name, hostname=hostname, pid=int(pid), last_seen=ago(last_seen_ago))


def make_conn(node_name: str, *, last_seen_ago: float = 0, closed_ago: float | None = None, **fields) -> Connection:
    fields.setdefault("opened_at", ago(last_seen_ago + 1))
    if closed_ago is not None:
        fields.update(closed_at=ago(closed_ago), close_code=1000, close_reason="normal")
    return Connection.objects.create(
        session_id=f"s_{uuid.uuid4().hex}",
        node=node_name,
        channel_name=f"specific.test!{uuid.uuid4().hex}",
        last_seen=ago(last_seen_ago),
        **fields,
    )


def fresh(row):
    return type(row).objects.get(pk=row.pk)


async def eventually(check, timeout: float = WAIT):
    """Poll `check` (a sync DB check, run in a thread) until it is true; fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await sync_to_async(check)():
        assert asyncio.get_running_loop().time() < deadline, "the database never reached the expected state"
        await asyncio.sleep(0.02)


@pytest.fixture
def fast():
    with override_realtime(FAST):
        yield


@pytest.fixture
async def running(fast):
    """No beat task before the test; this process's task stopped after it."""
    await node.stop()
    yield
    await node.stop()
    # The ORM thread keeps its connection; PostgreSQL will not drop a test database in use.
    await sync_to_async(connections.close_all)()


# ---------------------------------------------------------------- node_name


def test_node_name_is_host_and_pid_computed_per_call(monkeypatch):
    assert node.node_name() == f"{socket.gethostname()}:{os.getpid()}"
    monkeypatch.setattr(os, "getpid", lambda: 4242)  # as in a forked child
    assert node.node_name().endswith(":4242")


# ---------------------------------------------------------------- cleanup


@pytest.mark.django_db
def test_cleanup_closes_the_rows_of_a_dead_node_and_leaves_live_ones():
    make_node("dead:1", last_seen_ago=60)
    make_node("live:2", last_seen_ago=1)
    dead_open = [make_conn("dead:1", last_seen_ago=60) for _ in range(2)]
    dead_closed = make_conn("dead:1", last_seen_ago=70, closed_ago=65)
    live_open = make_conn("live:2", last_seen_ago=1)
    now = timezone.now()

    result = node.cleanup(now)

    assert result == node.CleanupResult(dead_nodes=1, stale_closed=2, orphans_closed=0, purged=0)
    assert result.closed == 2
    assert list(Node.objects.values_list("name", flat=True)) == ["live:2"]
    for row in map(fresh, dead_open):
        assert (row.closed_at, row.close_code, row.close_reason) == (now, 1006, "stale")
    assert fresh(dead_closed).close_code == 1000  # an ended session keeps how it ended
    assert fresh(live_open).is_open


@pytest.mark.django_db
def test_a_node_is_dead_after_three_beats():
    with override_realtime({"NODE_HEARTBEAT": 10}):
        make_node("slow:1", last_seen_ago=25)  # 2.5 beats: late, not dead
        make_node("gone:2", last_seen_ago=35)
        assert node.cleanup().dead_nodes == 1
    assert list(Node.objects.values_list("name", flat=True)) == ["slow:1"]


@pytest.mark.django_db
def test_cleanup_never_kills_its_own_node():
    own = node.node_name()
    make_node(own, last_seen_ago=3600)
    row = make_conn(own, last_seen_ago=3600)
    assert node.cleanup() == node.CleanupResult()
    assert Node.objects.filter(name=own).exists()
    assert fresh(row).is_open


@pytest.mark.django_db
def test_cleanup_closes_stale_rows_of_a_node_that_never_registered():
    stale = make_conn("never:1", last_seen_ago=60)
    recent = make_conn("never:1", last_seen_ago=1)  # may be a process still registering

    result = node.cleanup()

    assert (result.orphans_closed, result.dead_nodes, result.stale_closed) == (1, 0, 0)
    row = fresh(stale)
    assert (row.close_code, row.close_reason) == (1006, "stale")
    assert fresh(recent).is_open


@pytest.mark.django_db
def test_cleanup_purges_closed_rows_after_the_retention():
    old = make_conn("n:1", last_seen_ago=7200, closed_ago=7200)
    young = make_conn("n:1", last_seen_ago=60, closed_ago=60)
    make_node("n:1")
    still_open = make_conn("n:1", opened_at=ago(86400))  # old but open: never purged

    with override_realtime({"SESSION_RETENTION": 3600}):
        assert node.cleanup().purged == 1
    assert set(Connection.objects.values_list("pk", flat=True)) == {young.pk, still_open.pk}
    assert node.cleanup(retention=30).purged == 1
    assert list(Connection.objects.values_list("pk", flat=True)) == [still_open.pk]
    assert not Connection.objects.filter(pk=old.pk).exists()
    with pytest.raises(ValueError):
        node.cleanup(retention=-1)


@pytest.mark.django_db
def test_cleanup_sessions_command_prints_the_counts():
    make_node("dead:1", last_seen_ago=60)
    make_conn("dead:1", last_seen_ago=60)
    make_conn("never:3", last_seen_ago=60)
    make_conn("live:2", last_seen_ago=5000, closed_ago=5000)
    make_node("live:2")
    out = io.StringIO()

    call_command("cleanup_sessions", "--retention", "3600", stdout=out)

    text = out.getvalue()
    assert "stale closed: 2 (1 of 1 dead node(s), 1 of unregistered nodes)" in text
    assert "purged: 1 closed row(s) older than 3600 s" in text
    assert Connection.objects.filter(closed_at=None).count() == 0


@pytest.mark.django_db
def test_cleanup_sessions_command_uses_the_retention_setting():
    make_conn("n:1", closed_ago=10)
    out = io.StringIO()
    call_command("cleanup_sessions", stdout=out)
    assert "stale closed: 0" in out.getvalue()
    assert "purged: 0 closed row(s) older than 604800 s" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("cleanup_sessions", "--retention", "-5")


# ---------------------------------------------------------------- registration and the beat


@pytest.mark.django_db(transaction=True)
async def test_ensure_started_registers_and_the_beat_refreshes_last_seen(running, login):
    from realtime.sessions import rows as sessions

    own = node.node_name()
    await login("ann")
    await sessions.flush()
    open_row = await Connection.objects.aget(node=own, closed_at=None)
    closed_row = await sync_to_async(make_conn)(own, opened_at=timezone.now(), closed_ago=0)

    await node.ensure_started()

    registered = await Node.objects.aget(name=own)
    assert registered.hostname == socket.gethostname() and registered.pid == os.getpid()
    first_beat = registered.last_seen
    await eventually(lambda: Node.objects.get(name=own).last_seen > first_beat)
    await eventually(lambda: fresh(open_row).last_seen > open_row.last_seen)  # a live socket's row
    row = await sync_to_async(fresh)(closed_row)
    assert row.last_seen == closed_row.last_seen  # a closed row keeps its last sign of life


@pytest.mark.django_db(transaction=True)
async def test_ensure_started_is_idempotent(running):
    await asyncio.gather(*(node.ensure_started() for _ in range(5)))
    task = current().runner.task
    await node.ensure_started()

    assert current().runner.task is task and not task.done()
    beats = [t for t in asyncio.all_tasks() if t.get_name().startswith("realtime-node ")]
    assert beats == [task]
    assert await Node.objects.filter(name=node.node_name()).acount() == 1


@pytest.mark.django_db(transaction=True)
@override_realtime({"NODE_HEARTBEAT": 0.2, "CLEANUP_INTERVAL": 0.3})  # periods apart: each has its turn
async def test_the_task_runs_the_cleanup(running):
    await sync_to_async(make_node)("dead:1", last_seen_ago=60)
    row = await sync_to_async(make_conn)("dead:1", last_seen_ago=60)

    await node.ensure_started()

    await eventually(lambda: not fresh(row).is_open)
    assert not await Node.objects.filter(name="dead:1").aexists()


@pytest.mark.django_db(transaction=True)
async def test_the_task_survives_database_errors_without_spinning(running, monkeypatch, caplog):
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    real_beat = node._beat

    def flaky_beat(name, live):
        calls.append(loop.time())
        if len(calls) <= 3:
            raise DatabaseError("database is down")
        real_beat(name, live)

    monkeypatch.setattr(node, "_beat", flaky_beat)
    await node.ensure_started()
    own = node.node_name()
    registered = (await Node.objects.aget(name=own)).last_seen

    await eventually(lambda: Node.objects.get(name=own).last_seen > registered)

    assert len(calls) >= 4 and not current().runner.task.done()
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert min(gaps) > FAST["NODE_HEARTBEAT"] / 2  # a failing beat waits for its period
    assert "database is down" in caplog.text  # logged with its traceback, once per streak
    assert "beat failed again" in caplog.text and "beat works again" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_a_database_down_at_start_does_not_fail_the_request(running, monkeypatch):
    real_register = node._register
    failures = []

    def down_once(name):
        if not failures:
            failures.append(name)
            raise DatabaseError("no database yet")
        real_register(name)

    monkeypatch.setattr(node, "_register", down_once)
    await node.ensure_started()  # does not raise
    assert not await Node.objects.filter(name=node.node_name()).aexists()
    # The beat finds no row and registers again.
    await eventually(lambda: Node.objects.filter(name=node.node_name()).exists())


@pytest.mark.django_db(transaction=True)
async def test_registration_closes_rows_left_by_a_previous_process_of_the_same_name(running):
    own = node.node_name()
    await sync_to_async(make_node)(own, last_seen_ago=3600)
    leftover = await sync_to_async(make_conn)(own, opened_at=current().started_at - timedelta(minutes=5))
    ours = await sync_to_async(make_conn)(own, opened_at=timezone.now())

    await node.ensure_started()

    left = await sync_to_async(fresh)(leftover)
    assert (left.close_code, left.close_reason) == (1006, "stale")
    assert (await sync_to_async(fresh)(ours)).is_open
    assert (await Node.objects.aget(name=own)).started_at > timezone.now() - timedelta(minutes=1)


@pytest.mark.django_db(transaction=True)
async def test_starting_on_another_loop_replaces_the_task(running):
    await node.ensure_started()
    first = current().runner.task

    await asyncio.to_thread(asyncio.run, node.ensure_started())  # e.g. a second server loop

    await asyncio.wait([first], timeout=WAIT)
    assert first.cancelled()
    assert current().runner.loop is not asyncio.get_running_loop()
    await node.stop()  # that loop is closed by now: nothing to cancel, no error
    assert current().runner is None


# ---------------------------------------------------------------- shutdown


@pytest.mark.django_db(transaction=True)
async def test_shutdown_closes_this_nodes_rows_with_1001(running):
    own = node.node_name()
    await node.ensure_started()
    mine = [await sync_to_async(make_conn)(own) for _ in range(2)]
    other = await sync_to_async(make_conn)("other:9")
    task = current().runner.task

    assert await node.shutdown() == 2

    assert task.done()
    for row in [await sync_to_async(fresh)(r) for r in mine]:
        assert (row.close_code, row.close_reason) == (1001, "shutdown") and row.closed_at is not None
    assert (await sync_to_async(fresh)(other)).is_open
    assert not await Node.objects.filter(name=own).aexists()
    await node.ensure_started()  # a late request during shutdown registers nothing
    assert not await Node.objects.filter(name=own).aexists()


@pytest.mark.django_db(transaction=True)
async def test_the_twisted_hook_runs_shutdown_before_the_reactor_stops(running, monkeypatch):
    from twisted.internet import defer

    class FakeReactor:
        def __init__(self):
            self.triggers = []

        def addSystemEventTrigger(self, phase, event, callable_):
            self.triggers.append((phase, event, callable_))

    reactor = FakeReactor()
    monkeypatch.setattr(daphne, "_hook_pid", None)
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)

    daphne.install()  # the hook goes in once the node has started
    await node.ensure_started()
    assert daphne.install_shutdown_hook() is True
    assert [(phase, event) for phase, event, _ in reactor.triggers] == [("before", "shutdown")]
    row = await sync_to_async(make_conn)(node.node_name())

    deferred = reactor.triggers[0][2]()
    assert isinstance(deferred, defer.Deferred)
    await deferred.asFuture(asyncio.get_running_loop())

    assert (await sync_to_async(fresh)(row)).close_code == 1001


@pytest.mark.django_db(transaction=True)
async def test_a_failing_shutdown_is_logged_and_does_not_hold_the_reactor(running, monkeypatch, caplog):
    def broken(name, reason):
        raise DatabaseError("database is down")

    monkeypatch.setattr(node, "_retire", broken)
    await daphne._shutdown_quietly()  # does not raise
    assert "shutdown failed" in caplog.text


def test_the_hook_without_an_asyncio_loop_leaves_the_rows_to_the_cleanup(caplog):
    assert daphne._before_reactor_shutdown() is None
    assert "no asyncio loop" in caplog.text


def test_no_hook_outside_twisted(monkeypatch):
    monkeypatch.setattr(daphne, "_hook_pid", None)
    monkeypatch.delitem(sys.modules, "twisted.internet.reactor", raising=False)
    assert daphne.install_shutdown_hook() is False


@pytest.mark.django_db(transaction=True)
async def test_node_middleware_registers_then_calls_the_app(running):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])
        assert await Node.objects.filter(name=node.node_name()).aexists()

    middleware = node.NodeMiddleware(app)
    await middleware({"type": "http"}, None, None)
    await middleware({"type": "websocket"}, None, None)

    assert seen == ["http", "websocket"]
    assert await Node.objects.acount() == 1


@pytest.mark.django_db(transaction=True)
async def test_the_beat_keeps_only_live_sockets_rows_open(running, login):
    """A socket whose consumer ended without `on_disconnect` (here: its task cancelled, as a
    server does with an application that outlives its close) must not stay "open" for ever."""
    from realtime.sessions import rows as sessions

    alive = await login("ann")
    gone = await login("bob")
    await sessions.flush()
    rows = {row.user.username: row async for row in Connection.objects.select_related("user").filter(closed_at=None)}
    assert set(rows) == {"ann", "bob"}

    gone.communicator.future.cancel()  # the consumer ends; its on_disconnect never runs
    with pytest.raises(asyncio.CancelledError):
        await gone.communicator.future
    await node.ensure_started()

    await eventually(lambda: not fresh(rows["bob"]).is_open)
    phantom = await sync_to_async(fresh)(rows["bob"])
    assert (phantom.close_code, phantom.close_reason) == (node.STALE_CODE, node.STALE_REASON)
    # The live socket's row stays open through the same beats, and the socket is served.
    assert (await sync_to_async(fresh)(rows["ann"])).is_open
    assert (await alive.request({"type": "ping", "id": 5}))["type"] == "pong"
    assert (await sync_to_async(fresh)(rows["ann"])).last_seen > phantom.last_seen - timedelta(seconds=1)


@pytest.mark.django_db
def test_a_beat_is_the_three_updates_the_docs_describe():
    from pathlib import Path

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_node("beat:1")
    live, abandoned = make_conn("beat:1", last_seen_ago=60), make_conn("beat:1", last_seen_ago=60)
    with CaptureQueriesContext(connection) as queries:
        node._beat("beat:1", frozenset({live.pk}))
    updates = [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 3, updates  # Node.last_seen, the live rows' last_seen, the abandoned rows' close
    assert fresh(live).is_open and fresh(abandoned).close_code == node.STALE_CODE
    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert "the task runs three UPDATEs" in operations and "three UPDATEs" in node.__doc__
    assert "three UPDATEs" in node._beat.__doc__
