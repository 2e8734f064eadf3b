"""Session rows written in the background (realtime/sessions/rows.py), the connection limit in the engine
(realtime/sessions/slots.py), and the auth deadline under a busy database thread."""

import asyncio
import contextlib
import math
import threading
import time
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection, connections

from realtime.engine import get_engine
from realtime.engine.redis import RedisEngine
from realtime.http import metrics as metrics_view
from realtime.models import Connection
from realtime.runtime import node
from realtime.sessions import rows as sessions
from realtime.sessions import slots
from realtime.support.conf import realtime_settings
from tests.conftest import make_tokens, override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def close_database_thread_connection():
    """Close what the test's own ORM reads left open on the database thread (PostgreSQL
    drops no test database still in use); the writer's calls close theirs themselves."""
    yield
    await sync_to_async(connections.close_all)()


class Statements:
    """The SQL statements run on the database thread (where Channels runs every ORM call of a socket)."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.sql.append(sql)
        return execute(sql, params, many, context)

    def count(self, prefix: str, table: str = "realtime_connection") -> int:
        return sum(1 for sql in self.sql if sql.lstrip().upper().startswith(prefix) and table in sql)


@pytest.fixture
async def statements():
    """Record the statements of the database thread while the test runs."""
    recorder = Statements()
    # On the database thread: `connection` is that thread's own there.
    await database_sync_to_async(lambda: connection.execute_wrappers.append(recorder))()
    yield recorder
    await database_sync_to_async(lambda: connection.execute_wrappers.remove(recorder))()


@asynccontextmanager
async def busy_database_thread():
    """Hold Django's one database thread (as a reconnect storm does) until the block ends."""
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(30)

    blocker = asyncio.ensure_future(database_sync_to_async(hold)())
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
    try:
        yield
    finally:
        release.set()
        await blocker


def row_fields(user, session_id="s_test", **extra):
    return {
        "session_id": session_id,
        "channel_name": f"chan-{session_id}",
        "node": node.node_name(),
        "remote_addr": "127.0.0.1",
        "user_agent": "tests",
        "user": user,
        "auth_method": "header",
        "expires_at": None,
        **extra,
    }


async def token_for(user) -> str:
    access, _ = await sync_to_async(make_tokens)(user)
    return access


# ---------------------------------------------------------------- the writer


async def test_opens_queued_together_are_one_insert(user, statements):
    handles = [sessions.open_row(**row_fields(user, f"s_{i}")) for i in range(50)]
    assert all(handle.pk is None for handle in handles)  # nobody waited for the database
    await sessions.flush()
    assert statements.count("INSERT") == 1
    assert sorted(handle.pk for handle in handles) == sorted(
        [pk async for pk in Connection.objects.values_list("pk", flat=True)]
    )


async def test_an_authenticated_connect_makes_one_query_the_user_lookup(connect, user, statements):
    token = await token_for(user)
    mark = len(statements.sql)
    socket = await connect(token=token)
    welcome = await socket.recv_type("welcome")
    await sessions.flush()
    # (SQLite's `BEGIN IMMEDIATE` around the bulk insert is transaction control, not a query)
    connect_path = [sql for sql in statements.sql[mark:] if not sql.upper().startswith(("BEGIN", "COMMIT"))]
    lookups = [sql for sql in connect_path if sql.lstrip().upper().startswith("SELECT") and "auth_user" in sql]
    inserts = [sql for sql in connect_path if sql.lstrip().upper().startswith("INSERT")]
    assert len(lookups) == 1 and len(inserts) == 1  # the lookup, then the row (by the writer, after `welcome`)
    # nothing else: no COUNT of open rows for the limit, no UPDATE
    assert len(connect_path) == 2, [sql[:90] for sql in connect_path]
    assert await Connection.objects.filter(session_id=welcome["session"], closed_at=None).aexists()


async def test_sockets_connecting_together_share_their_inserts(connect, make_user, statements):
    users = [await sync_to_async(make_user)(f"u{i}") for i in range(20)]
    tokens = [await token_for(user) for user in users]
    sockets = await asyncio.gather(*(connect(token=token) for token in tokens))
    for socket in sockets:
        await socket.recv_type("welcome")
    await sessions.flush()
    assert await Connection.objects.acount() == 20
    assert statements.count("INSERT") < 20


async def test_an_open_and_its_close_in_one_batch_both_land_the_close_last(user, statements):
    row = sessions.open_row(**row_fields(user))
    sessions.record_refresh(row, 2_000_000_000)
    await sessions.record_close(row, 4000, "client_closed")
    assert statements.count("INSERT") == 1
    saved = await Connection.objects.aget(pk=row.pk)
    assert (saved.close_code, saved.close_reason, saved.refresh_count) == (4000, "client_closed", 1)
    assert saved.closed_at is not None


def database_errors() -> float:
    return metrics_view.registry().get_sample_value("realtime_service_errors_total", {"service": "database"})


async def test_a_row_the_database_refuses_does_not_take_its_batch_with_it(make_user, django_user_model, caplog):
    ann, gone = await sync_to_async(make_user)("ann"), await sync_to_async(make_user)("gone")
    # Deleted between its authentication and the write: its row cannot be inserted (foreign key).
    await django_user_model.objects.filter(pk=gone.pk).adelete()
    before = database_errors()
    good = sessions.open_row(**row_fields(ann, "s_good"))
    lost = sessions.open_row(**row_fields(gone, "s_lost"))
    await sessions.flush()
    sessions.record_refresh(lost, None)
    closed = sessions.record_close(lost, 1000, "client_closed")  # neither raises into the socket
    await closed
    assert good.pk is not None and lost.pk is None and lost.lost
    assert [row.session_id async for row in Connection.objects.all()] == ["s_good"]
    assert database_errors() == before + 1
    assert "could not write 1 session row open" in caplog.text


async def test_a_client_address_that_is_not_an_ip_is_stored_as_null_and_sinks_no_batch(connect, make_user):
    """An X-Forwarded-For from a trusted peer can carry anything (uvicorn's proxy headers put it in the
    scope's `client`): PostgreSQL's inet refused it, and with it five other users' rows."""
    users = [await sync_to_async(make_user)(f"u{i}") for i in range(6)]
    addresses = ["10.0.0.1", "not-an-ip", "2001:db8::7", "10.0.0.4", "unknown", "fe80::1%eth0"]
    tokens = [await token_for(user) for user in users]
    sockets = await asyncio.gather(
        *(connect(token=token, client=(address, 5000)) for token, address in zip(tokens, addresses, strict=True))
    )
    for socket in sockets:
        await socket.recv_type("welcome")
    await sessions.flush()
    stored = {row.user.username: row.remote_addr async for row in Connection.objects.select_related("user")}
    assert stored == {"u0": "10.0.0.1", "u1": None, "u2": "2001:db8::7", "u3": "10.0.0.4", "u4": None, "u5": "fe80::1"}


async def test_any_row_the_database_refuses_is_written_alone_and_named_in_the_log(user, django_user_model, caplog):
    """Not only a foreign key: whatever fails the batch, the batch is written row by row."""
    unsaved = django_user_model(username="never-saved")  # refused by Django itself (ValueError), not the database
    handles = [sessions.open_row(**row_fields(user, f"s_{i}")) for i in range(3)]
    bad = sessions.open_row(**row_fields(unsaved, "s_bad"))
    await sessions.flush()
    assert bad.lost and bad.pk is None and all(handle.pk is not None for handle in handles)
    written = sorted([sid async for sid in Connection.objects.values_list("session_id", flat=True)])
    assert written == ["s_0", "s_1", "s_2"]
    assert "s_bad" in caplog.text  # the log names the row that was refused


async def test_the_close_is_written_when_the_consumer_is_cancelled_while_it_waits(connect, user):
    socket = await connect(token=await token_for(user))
    welcome = await socket.recv_type("welcome")
    await sessions.flush()
    async with busy_database_thread():
        await socket.communicator.send_input({"type": "websocket.disconnect", "code": 4000})
        # The consumer queued its close and waits for the (busy) database thread: cancel it there,
        # as daphne does after its application_close_timeout.
        await socket.communicator.wait(timeout=0.2)  # cancels the application when it has not ended
        assert socket.communicator.future.cancelled()
    await sessions.flush()
    row = await Connection.objects.aget(session_id=welcome["session"])
    assert (row.close_code, row.close_reason) == (4000, "client_closed")


async def test_a_shutdown_writes_what_is_queued_before_it_retires_the_rows(user):
    row = sessions.open_row(**row_fields(user))  # queued, not written yet
    assert await node.shutdown() == 1
    saved = await Connection.objects.aget(pk=row.pk)
    assert (saved.close_code, saved.close_reason) == (1001, "shutdown")
    await node.stop()


# ---------------------------------------------------------------- the connection limit


@override_realtime({"MAX_CONNECTIONS_PER_USER": 1})
async def test_the_limit_holds_whatever_order_the_sockets_authenticate_in(connect, user):
    """Two sockets connect, the second authenticates first: one is admitted, never both."""
    first, second = await connect(), await connect()
    token = await token_for(user)
    await second.send({"type": "auth", "token": token, "id": 1})
    await first.send({"type": "auth", "token": token, "id": 1})
    replies = [await socket.recv() for socket in (first, second)]
    assert sorted(reply["type"] for reply in replies) == ["disconnect", "welcome"]
    assert [reply["code"] for reply in replies if reply["type"] == "disconnect"] == [4529]


@override_realtime({"MAX_CONNECTIONS_PER_USER": 3})
async def test_many_sockets_at_once_get_exactly_the_limit(connect, user):
    token = await token_for(user)
    sockets = await asyncio.gather(*(connect(token=token) for _ in range(8)))
    kinds = [(await socket.recv())["type"] for socket in sockets]
    assert kinds.count("welcome") == 3 and kinds.count("disconnect") == 5


@override_realtime({"MAX_CONNECTIONS_PER_USER": 1})
async def test_the_limit_counts_the_sockets_of_other_processes(redis_layer, redis_url, redis_prefix, connect, user):
    """Another process (its own engine and Redis connections) holds the user's one slot."""
    with override_realtime(REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix):
        other_process = RedisEngine(redis_url, redis_prefix)
        try:
            assert await other_process.slot_admit(str(user.pk), "socket-elsewhere", limit=1, ttl=30)
            refused = await connect(token=await token_for(user))
            await refused.expect_disconnect(4529)
            await other_process.slot_release(str(user.pk), "socket-elsewhere")  # that socket closed
            admitted = await connect(token=await token_for(user))
            assert (await admitted.recv_type("welcome"))["type"] == "welcome"
            assert not await other_process.slot_admit(str(user.pk), "another-elsewhere", limit=1, ttl=30)
        finally:
            await other_process.close()


@override_realtime({"MAX_CONNECTIONS_PER_USER": 1, "NODE_HEARTBEAT": 0.1, "CLEANUP_INTERVAL": 60})
async def test_a_live_socket_keeps_its_slot_and_a_dead_one_lapses(connect, user):
    """The beat renews this process's slots; a slot nobody renews (its process died) lapses after 3 beats."""
    await node.ensure_started()
    try:
        live = await connect(token=await token_for(user))
        await live.recv_type("welcome")
        engine = get_engine()
        (slot,) = engine.slots[str(user.pk)]
        first_expiry = engine.slots[str(user.pk)][slot]
        # Wait for the beat to renew it past the moment it would have lapsed without renewal.
        while engine.slots[str(user.pk)][slot] < first_expiry + slots.ttl():
            await asyncio.sleep(slots.ttl() / 3)
        refused = await connect(token=await token_for(user))
        await refused.expect_disconnect(4529)
        # A process that dies stops renewing: drop the slot from this process's renewals, as a kill would.
        slots.local().clear()
        while engine.slots.get(str(user.pk), {}).get(slot, 0) > engine.clock():
            await asyncio.sleep(slots.ttl() / 3)
        admitted = await connect(token=await token_for(user))
        assert (await admitted.recv_type("welcome"))["type"] == "welcome"
    finally:
        await node.stop()


@override_realtime({"MAX_CONNECTIONS_PER_USER": 1})
async def test_the_slot_of_a_consumer_that_ended_without_its_close_is_not_renewed(connect, user):
    """Only sockets that are really alive hold a slot (PROTOCOL section 8): a consumer killed by its
    server (daphne's application_close_timeout) never ran on_disconnect, but its slot lapses."""
    socket = await connect(token=await token_for(user))
    await socket.recv_type("welcome")
    (slot,) = slots.local()
    socket.communicator.future.cancel()  # the application task is killed, as a server does
    with contextlib.suppress(asyncio.CancelledError):
        await socket.communicator.future
    assert slot in slots.local()  # its close never ran
    engine = get_engine()
    before = engine.slots[str(user.pk)][slot]
    await slots.touch_local()  # the next beat
    assert slot not in slots.local() and engine.slots[str(user.pk)][slot] == before  # not renewed: it lapses


async def test_closing_a_socket_gives_its_slot_back(connect, user):
    socket = await connect(token=await token_for(user))
    await socket.recv_type("welcome")
    assert list(slots.local().values()) == [str(user.pk)]
    await socket.close()
    assert slots.local() == {} and get_engine().slots == {}


@override_realtime(REDIS_URL="redis://127.0.0.1:9/0")  # nothing listens there: the engine is down
async def test_an_engine_down_at_admission_answers_unavailable_and_the_socket_may_try_again(connect, user):
    socket = await connect()
    reply = await socket.request({"type": "auth", "token": await token_for(user), "id": 1})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "unavailable", 1)
    assert await socket.request({"type": "ping", "id": 2}) == {"type": "pong", "id": 2}  # still open
    assert await Connection.objects.acount() == 0 and slots.local() == {}
    with override_realtime(REDIS_URL=""):  # the engine is back
        welcome = await socket.request({"type": "auth", "token": await token_for(user), "id": 3})
        assert (welcome["type"], welcome["id"]) == ("welcome", 3)
        await socket.close()


# ---------------------------------------------------------------- the auth deadline


@override_realtime({"AUTH_TIMEOUT": 0.3})
async def test_credentials_waiting_for_a_busy_database_are_not_timed_out(connect, user):
    token = await token_for(user)
    waiting = await connect()
    async with busy_database_thread():
        await waiting.send({"type": "auth", "token": token, "id": 1})
        # A socket opened later, that sends nothing, times out: so `waiting`'s deadline has passed too.
        silent = await connect()
        await silent.expect_disconnect(4501, "auth_timeout")
    welcome = await waiting.recv_type("welcome")
    assert welcome["id"] == 1


# ---------------------------------------------------------------- refused connects: no row, a count, a rate


def refusals(reason: str) -> float:
    return metrics_view.registry().get_sample_value("realtime_connects_refused_total", {"reason": reason}) or 0.0


async def user_rows(user) -> int:
    return await Connection.objects.filter(user=user).acount()


@override_realtime({"MAX_CONNECTIONS_PER_USER": 20, "CONNECT_BURST": 1000})
async def test_connects_refused_at_the_connection_limit_write_no_row(connect, user):
    """The finding: with 20 sockets open, 100 refused attempts (4529) made it 120 rows, kept for 7 days."""
    token, before = await token_for(user), refusals("too_many_connections")
    for _ in range(20):
        await (await connect(token=token)).recv_type("welcome")
    for _ in range(100):
        await (await connect(token=token)).expect_disconnect(4529, "too_many_connections")
    await sessions.flush()
    rows = await user_rows(user)
    assert rows == 20, f"{rows} session rows for 20 open sockets and 100 refused attempts"
    assert refusals("too_many_connections") == before + 100


@override_realtime({"CONNECT_BURST": 5, "CONNECT_RATE": 0.01})
async def test_connects_over_the_users_rate_are_closed_4008_and_write_no_row(connect, user, make_user):
    token, before = await token_for(user), refusals("rate_limited")
    for _ in range(5):
        socket = await connect(token=token)
        await socket.recv_type("welcome")
        await socket.close()  # closed: the connection limit is not what refuses the next one
    refused = await connect(token=token)
    await refused.expect_disconnect(4008, "rate_limited")  # "reconnect after backoff"
    other = await sync_to_async(make_user)("bob")  # another user's connects are their own
    await (await connect(token=await token_for(other))).recv_type("welcome")
    frame_auth = await connect()  # an `auth` frame counts as a connect too
    await frame_auth.send({"type": "auth", "id": 1, "token": token})
    await frame_auth.expect_disconnect(4008)
    await sessions.flush()
    assert await user_rows(user) == 5
    assert refusals("rate_limited") == before + 2


async def test_a_flood_of_connects_with_one_token_is_rate_limited_with_a_row_per_admitted_socket(connect, user):
    """The finding: 300 connects with one token wrote 300 rows. Each connect here is closed by the
    client once answered (so the connection limit never refuses one): the defaults admit at most
    CONNECT_BURST of them, plus what the bucket refilled (CONNECT_RATE) while the flood ran."""
    token, answers = await token_for(user), []
    started = time.monotonic()
    for _ in range(300):
        socket = await connect(token=token)
        frame = await socket.recv()  # `welcome`, or `disconnect` before the close
        answers.append(frame["type"] if frame["type"] == "welcome" else str(frame["code"]))
        await socket.close()
    elapsed = time.monotonic() - started
    await sessions.flush()
    admitted, rows = answers.count("welcome"), await user_rows(user)
    assert answers.count("4008") == 300 - admitted
    bound = realtime_settings.CONNECT_BURST + math.ceil(elapsed * realtime_settings.CONNECT_RATE)
    assert rows == admitted <= bound, f"300 connects: {admitted} admitted, {rows} rows (at most {bound})"


@override_realtime({"CONNECT_BURST": 2, "CONNECT_RATE": 0.01})
async def test_the_connect_rate_counts_the_connects_on_other_processes(
    redis_layer, redis_url, redis_prefix, connect, user
):
    with override_realtime(REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix):
        other_process = RedisEngine(redis_url, redis_prefix)
        try:
            assert await other_process.connect_take(str(user.pk), rate=0.01, burst=2)  # a connect over there
            token = await token_for(user)
            await (await connect(token=token)).recv_type("welcome")
            await (await connect(token=token)).expect_disconnect(4008)
        finally:
            await other_process.close()
