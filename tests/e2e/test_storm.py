"""Connection storms against a real daphne process: a thousand sockets connecting, then closing, at once.

Every socket is authenticated and subscribed (so its close has channel-layer groups to
leave and presence to drop), then all of them close together with a code of the client's.
Nothing may run out (Redis connections, database connections): every session row must be
closed with the client's own code, and the server must log no traceback.
"""

from __future__ import annotations

import asyncio
import resource

import pytest

from realtime.models import Connection

from .client import Client

SOCKETS = 1000
CLIENT_CODE = 4000  # an application close code of the client's, so the rows show it is theirs
OPEN_AT_ONCE = 100  # handshakes in flight; a bound for the client side, not a measurement
WAIT = 300.0  # a bound on the whole storm, far above need (about 20 s on an idle 2-core machine)


def raise_file_limit(needed: int) -> None:
    """Two file descriptors per socket (client and server run on this machine); fail clearly if impossible."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {needed}: raise it (ulimit -Hn) to run the storm")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.mark.timeout(WAIT + 60)
async def test_a_thousand_sockets_opening_and_closing_at_once_are_each_recorded_with_their_own_code(
    servers, new_user, tokens
):
    raise_file_limit(4 * SOCKETS)
    # The test's sockets do not answer heartbeat pings while they wait for the others to open
    # (on a loaded machine that can outlast HEARTBEAT + HEARTBEAT_TIMEOUT): heartbeats are not
    # under test here, so they are set beyond the storm's bound.
    (server,) = await servers(
        1,
        REALTIME_MAX_CONNECTIONS_PER_USER=SOCKETS * 2,
        REALTIME_CONNECT_BURST=SOCKETS * 2,  # one user's thousand connects at once
        REALTIME_RATE=1000,
        REALTIME_RATE_BURST=1000,
        REALTIME_HEARTBEAT=WAIT * 2,
    )
    access, _ = await tokens(await new_user("ann"))
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one(n: int) -> Client:
        async with gate:
            client = await Client.authenticated(server.ws_url, access, timeout=WAIT)
            reply = await client.request({"type": "subscribe", "id": 1, "channel": f"public:storm{n % 10}"})
            assert reply["type"] == "subscribed", reply
            return client

    async with asyncio.timeout(WAIT):
        clients = await asyncio.gather(*(open_one(n) for n in range(SOCKETS)))
        sessions = {client.welcome["session"] for client in clients}
        assert len(sessions) == SOCKETS
        await asyncio.gather(*(client.ws.close(code=CLIENT_CODE) for client in clients))
        # The rows are closed by the consumers' own on_disconnect, not by a shutdown or a cleanup:
        # wait for the last of them (the server is still running).
        # (Rows are written in the background: count the closed ones, not the open ones.)
        closed = Connection.objects.filter(session_id__in=sessions, closed_at__isnull=False)
        while await closed.acount() < SOCKETS:
            await asyncio.sleep(0.2)  # polls the database, bounded by WAIT: there is no event to await here
    rows = Connection.objects.filter(session_id__in=sessions)
    codes = [code async for code in rows.values_list("close_code", flat=True)]
    assert codes == [CLIENT_CODE] * SOCKETS, {code: codes.count(code) for code in set(codes)}
    assert server.problems() == []
