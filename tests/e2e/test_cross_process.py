"""Two (or one) real daphne processes sharing one Redis and the test database.

What only separate processes can show: a revocation, an admin action or the
per-user connection limit crossing from one process to another; a process killed
with SIGKILL being found dead by another one's cleanup; a graceful stop (SIGTERM).
Latencies are printed (see the "e2e timings" summary), never asserted.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from rest_framework_simplejwt.tokens import RefreshToken
from websockets.exceptions import ConnectionClosed

from realtime.models import Connection, Node
from tests.conftest import PASSWORD
from tests.e2e.rows import POLL, POLL_LIMIT, poll_rows

from .client import Client
from .web import HttpSession, logout

pytestmark = [pytest.mark.e2e]

# Small liveness timers so a killed process is found within a few seconds.
FAST_NODES = {"REALTIME_NODE_HEARTBEAT": 0.5, "REALTIME_CLEANUP_INTERVAL": 0.5}


def aged_tokens(user, seconds: int) -> tuple[str, str]:
    """An (access, refresh) pair whose access token claims it was issued `seconds` ago."""
    refresh = RefreshToken.for_user(user)
    access = refresh.access_token
    access.set_iat(at_time=datetime.now(UTC) - timedelta(seconds=seconds))
    return str(access), str(refresh)


async def timed_disconnect(client: Client, code: int, reason: str | None = None) -> float:
    """Wait for `disconnect` + close with `code`; return the monotonic time the frame arrived."""
    frame = await client.recv_type("disconnect")
    arrived = time.monotonic()
    assert frame["code"] == code, frame
    if reason is not None:
        assert frame["reason"] == reason, frame
    await client.expect_closed(code)
    return arrived


async def row_of(client: Client) -> Connection:
    """The session row of an authenticated client, once the server's background writer wrote it."""
    (row,) = await poll_rows(lambda rows: True, [client.welcome["session"]])
    return row


# ---------------------------------------------------------------- revocation


async def test_logout_on_a_disconnects_the_users_sockets_on_b(servers, ws, new_user, tokens, timings):
    """Logout through server A's HTTP API closes the user's socket on B (4503); another user's stays."""
    a, b = await servers(2)
    ann, bob = await new_user("ann"), await new_user("bob")
    # Issued a few seconds ago: a revocation rejects tokens from *earlier* seconds (realtime.models.issued_before).
    access, refresh = await sync_to_async(aged_tokens)(ann, 5)
    on_b = await ws(b, token=access, welcome=True)
    on_a = await ws(a, token=access, welcome=True)
    bystander = await ws(b, token=(await tokens(bob))[0], welcome=True)

    waiting = [asyncio.create_task(timed_disconnect(client, 4503, "forbidden")) for client in (on_b, on_a)]
    sent = time.monotonic()
    assert await asyncio.to_thread(logout, a.url, access, refresh) == 204
    answered = time.monotonic()
    arrived_b, arrived_a = await asyncio.gather(*waiting)
    timings("logout POST on A -> disconnect on B", arrived_b - sent)
    timings("logout POST on A -> disconnect on A", arrived_a - sent)
    timings("logout POST on A round trip (204)", answered - sent)

    await bystander.ping("still-here")
    # B records the close once the client has gone (after the close handshake): poll for it.
    (row,) = await poll_rows(lambda rows: rows[0].closed_at is not None, [on_b.welcome["session"]])
    assert (row.close_code, row.close_reason, row.node) == (4503, "forbidden", b.node)
    # The access token was revoked with the logout: it cannot open a socket on either server.
    again = await ws(b, token=access)
    await again.expect_disconnect(4501, "unauthorized")


async def test_deactivation_in_another_process_disconnects_on_both_servers(
    servers, ws, new_user, tokens, timings, redis_layer
):
    """`user.is_active = False; save()` in the test process (on the same Redis) closes 4503 on A and on B."""
    a, b = await servers(2)
    ann, bob = await new_user("ann"), await new_user("bob")
    clients = [await ws(server, token=(await tokens(ann))[0], welcome=True) for server in (a, b)]
    bystanders = [await ws(server, token=(await tokens(bob))[0], welcome=True) for server in (a, b)]

    waiting = [asyncio.create_task(timed_disconnect(client, 4503)) for client in clients]
    sent = time.monotonic()
    ann.is_active = False
    await ann.asave()
    for server, arrived in zip((a, b), await asyncio.gather(*waiting), strict=True):
        timings(f"deactivation (ORM save) -> disconnect on {server.name}", arrived - sent)
    for bystander in bystanders:
        await bystander.ping("bystander")


@pytest.mark.parametrize(
    ("action", "code", "reason"), [("disconnect", 4503, "forbidden"), ("force_reconnect", 4011, "force_reconnect")]
)
async def test_admin_action_on_a_reaches_the_socket_on_b(servers, ws, new_user, tokens, timings, action, code, reason):
    """A staff user logged in to server A's admin runs a Connection action on a socket living on B."""
    a, b = await servers(2)
    await new_user("root", is_staff=True, is_superuser=True)
    ann = await new_user("ann")
    target = await ws(b, token=(await tokens(ann))[0], welcome=True)
    other = await ws(b, token=(await tokens(ann))[0], welcome=True)
    row = await row_of(target)
    assert row.node == b.node

    admin = HttpSession(a.url)
    await asyncio.to_thread(admin.admin_login, "root", PASSWORD)
    waiting = asyncio.create_task(timed_disconnect(target, code, reason))
    sent = time.monotonic()
    response = await asyncio.to_thread(admin.admin_action, "/admin/realtime/connection/", action, [row.pk])
    assert response.status == 302, (response.status, response.body[:500])
    arrived = await waiting
    timings(f"admin {action} POST on A -> disconnect on B", arrived - sent)

    await other.ping("untouched")
    # The row is closed by the socket's own server once the client has gone.
    rows = await poll_rows(lambda rows: rows[0].closed_at is not None, [target.welcome["session"]])
    assert (rows[0].close_code, rows[0].close_reason) == (code, reason)


async def test_admin_detail_page_button_on_a_reaches_the_socket_on_b(servers, ws, new_user, tokens):
    """The Connection detail page's "Force reconnect" button (a POST to <pk>/force-reconnect/) crosses processes."""
    a, b = await servers(2)
    await new_user("root", is_staff=True, is_superuser=True)
    target = await ws(b, token=(await tokens(await new_user("ann")))[0], welcome=True)
    row = await row_of(target)
    admin = HttpSession(a.url)
    await asyncio.to_thread(admin.admin_login, "root", PASSWORD)
    page = f"/admin/realtime/connection/{row.pk}/change/"
    token = await asyncio.to_thread(admin.csrf_token, page)
    response = await asyncio.to_thread(
        admin.post, f"/admin/realtime/connection/{row.pk}/force-reconnect/", form={"csrfmiddlewaretoken": token}
    )
    assert response.status == 302, (response.status, response.body[:500])
    await target.expect_disconnect(4011, "force_reconnect")


# ---------------------------------------------------------------- limits


async def test_connection_limit_counts_sockets_on_every_server(servers, ws, new_user, tokens):
    """MAX_CONNECTIONS_PER_USER=2: one socket on A, one on B, then a third on either is closed 4529."""
    a, b = await servers(2, REALTIME_MAX_CONNECTIONS_PER_USER=2)
    ann = await new_user("ann")
    first = await ws(a, token=(await tokens(ann))[0], welcome=True)
    second = await ws(b, token=(await tokens(ann))[0], welcome=True)
    for server in (a, b):
        third = await ws(server, token=(await tokens(ann))[0])
        frame = await third.expect_disconnect(4529, "too_many_connections")
        assert frame["reconnect"] is False
    await first.ping(1)
    await second.ping(2)
    # Another user is not affected by ann's count.
    bob = await ws(a, token=(await tokens(await new_user("bob")))[0], welcome=True)
    await bob.ping(3)
    # Once one of ann's sockets is gone, she may connect again (the row is closed on close).
    await first.close()
    await poll_rows(lambda rows: rows[0].closed_at is not None, [first.welcome["session"]])
    again = await ws(b, token=(await tokens(ann))[0], welcome=True)
    await again.ping(4)


async def test_the_slots_of_a_killed_server_lapse(servers, ws, new_user, tokens, timings):
    """MAX_CONNECTIONS_PER_USER=1: ann's socket on B holds her one slot; kill -9 B, and once its
    slots lapse (three of B's beats, nobody renewing them) A admits her again."""
    # (each attempt below counts toward ann's connect rate: lifted, as the slots are under test)
    a, b = await servers(2, REALTIME_MAX_CONNECTIONS_PER_USER=1, REALTIME_CONNECT_BURST=10000, **FAST_NODES)
    ann = await new_user("ann")
    await ws(b, token=(await tokens(ann))[0], welcome=True)
    refused = await ws(a, token=(await tokens(ann))[0])
    await refused.expect_disconnect(4529, "too_many_connections")
    b.kill9()
    killed = time.monotonic()
    while True:  # each attempt before the lapse is refused; bounded, never a measurement
        client = await ws(a, token=(await tokens(ann))[0])
        frame = await client.recv()
        if frame["type"] == "welcome":
            break
        assert frame["code"] == 4529, frame
        assert time.monotonic() - killed < POLL_LIMIT, "the killed server's slot never lapsed"
        await asyncio.sleep(POLL)
    timings("kill -9 of B -> ann admitted on A", time.monotonic() - killed)
    await client.ping("admitted")


# ---------------------------------------------------------------- liveness


async def test_kill_9_rows_are_closed_stale_by_the_other_servers_cleanup(servers, ws, new_user, tokens, timings):
    """SIGKILL B: A's periodic cleanup closes B's open rows (1006 "stale"); A's own rows stay open."""
    a, b = await servers(2, **FAST_NODES)
    ann, bob = await new_user("ann"), await new_user("bob")
    on_b = [await ws(b, token=(await tokens(user))[0], welcome=True) for user in (ann, bob)]
    on_a = await ws(a, token=(await tokens(ann))[0], welcome=True)
    assert await Node.objects.filter(name__in=[a.node, b.node]).acount() == 2

    b.kill9()
    killed = time.monotonic()
    sessions = [client.welcome["session"] for client in on_b]
    rows = await poll_rows(lambda rows: all(r.closed_at is not None for r in rows), sessions)
    timings("kill -9 of B -> its rows closed stale by A", time.monotonic() - killed)
    assert {(r.node, r.close_code, r.close_reason) for r in rows} == {(b.node, 1006, "stale")}
    assert not await Node.objects.filter(name=b.node).aexists()

    mine = await row_of(on_a)
    assert mine.closed_at is None and mine.node == a.node
    assert await Node.objects.filter(name=a.node).aexists()
    await on_a.ping("alive")
    # The clients of B saw the TCP connection drop, with no close frame.
    for client in on_b:
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is None


async def test_sigterm_says_going_away_and_closes_the_row(servers, ws, new_user, tokens):
    """A graceful stop: `disconnect` 1001 and close 1001 to the client, the row closed 1001, the node retired."""
    (server,) = await servers(1)
    client = await ws(server, token=(await tokens(await new_user("ann")))[0], welcome=True)
    await daphne_forgot_finished_requests()
    waiting = asyncio.create_task(client.expect_disconnect(1001, "going_away"))
    status = await server.aterminate()
    row = await row_of(client)
    assert row.closed_at is not None and row.close_code == 1001, vars(row)
    assert not await Node.objects.filter(name=server.node).aexists()
    assert status == 0, server.log_text()[-3000:]
    frame = await waiting
    assert frame["reconnect"] is True


async def test_sigterm_just_after_a_new_connection_still_says_going_away(servers, ws, new_user, tokens):
    """SIGTERM within a second of a WebSocket handshake (on a busy server: always): every client hears 1001.

    The stop must not depend on when the last client happened to connect.
    """
    (server,) = await servers(1)
    ann = await new_user("ann")
    settled = await ws(server, token=(await tokens(ann))[0], welcome=True)
    await daphne_forgot_finished_requests()
    newcomer = await ws(server, token=(await tokens(ann))[0], welcome=True)
    waiting = [asyncio.create_task(client.recv_type("disconnect")) for client in (settled, newcomer)]
    await server.aterminate()
    for task in waiting:
        frame = await task
        assert (frame["code"], frame["reason"]) == (1001, "going_away"), frame


async def daphne_forgot_finished_requests() -> None:
    """Let daphne's `application_checker` (a 1 s timer) forget the finished HTTP requests.

    The readiness check and every WebSocket handshake leave one behind. Until it is
    forgotten, a SIGTERM makes daphne's `kill_all_applications` fail with a KeyError (the
    test above shows it) and no application hears of the stop. A bounded wait on a
    server-internal timer the test cannot observe otherwise.
    """
    await asyncio.sleep(1.5)
