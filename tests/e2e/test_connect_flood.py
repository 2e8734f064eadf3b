"""Connect floods with one token against the production server (uvicorn, two processes sharing Redis):
connects are rate-limited per user on every process (4008), and a refused connect writes no session row.

Figures of the finding (before): 300 connects with one token wrote 300 rows, and 100 attempts
refused with 4529 (20 sockets open) wrote 120 rows, all kept for SESSION_RETENTION (7 days).
"""

from __future__ import annotations

import math
import time

import pytest

from realtime.models import Connection

from .client import Client
from .rows import poll_queryset
from .test_metrics_e2e import TOKEN, scrape, value

pytestmark = [pytest.mark.e2e]

CONNECT_BURST, CONNECT_RATE = 30, 1.0  # the defaults (realtime/support/conf.py)


async def answer(server, token: str) -> dict:
    """Connect with `token`, read the server's first frame (`welcome`, or `disconnect` before its close), close."""
    client = await Client.open(server.ws_url, token=token)
    try:
        return await client.recv()
    finally:
        await client.close()


async def refused_on(servers, reason: str) -> float:
    """`realtime_connects_refused_total{reason}` summed over the servers (each process counts its own)."""
    return sum([value(await scrape(server), "realtime_connects_refused_total", reason=reason) for server in servers])


async def settled_rows(user, count: int) -> list[Connection]:
    """The user's rows once `count` of them exist, all closed (each is written a moment after its socket)."""
    rows = Connection.objects.filter(user=user)
    return await poll_queryset(lambda found: len(found) >= count and all(r.closed_at for r in found), rows)


async def test_300_connects_with_one_token_on_two_processes_admit_the_users_rate_and_record_only_those(
    servers, new_user, tokens, timings
):
    a, b = await servers(2, "uvicorn", METRICS_TOKEN=TOKEN)
    ann = await new_user("ann")
    access, _ = await tokens(ann)
    started = time.monotonic()
    answers = [await answer((a, b)[n % 2], access) for n in range(300)]  # each closed before the next
    elapsed = time.monotonic() - started
    welcomed = [frame for frame in answers if frame["type"] == "welcome"]
    refused = [frame for frame in answers if frame["type"] != "welcome"]
    assert {(frame["type"], frame["code"], frame["reason"]) for frame in refused} == {
        ("disconnect", 4008, "rate_limited")
    }
    bound = CONNECT_BURST + math.ceil(elapsed * CONNECT_RATE)  # one bucket for both processes
    assert len(welcomed) <= bound, f"{len(welcomed)} of 300 admitted in {elapsed:.1f} s (at most {bound})"
    rows = await settled_rows(ann, len(welcomed))
    assert sorted(row.session_id for row in rows) == sorted(frame["session"] for frame in welcomed)
    assert await refused_on((a, b), "rate_limited") == len(refused)
    timings(f"300 connects with one token: {len(welcomed)} admitted, {len(rows)} session rows", elapsed)


async def test_100_connects_refused_at_the_connection_limit_write_no_row(servers, ws, new_user, tokens):
    (server,) = await servers(1, "uvicorn", METRICS_TOKEN=TOKEN, REALTIME_CONNECT_BURST=1000)  # the limit only
    ann = await new_user("ann")
    access, _ = await tokens(ann)
    held = [await ws(server, token=access, welcome=True) for _ in range(20)]  # MAX_CONNECTIONS_PER_USER
    answers = [await answer(server, access) for _ in range(100)]
    assert {(frame["type"], frame["code"]) for frame in answers} == {("disconnect", 4529)}
    for client in held:
        await client.close()
    rows = await settled_rows(ann, 20)
    assert len(rows) == 20, f"{len(rows)} session rows for 20 sockets and 100 refused attempts (120 before)"
    assert await refused_on((server,), "too_many_connections") == 100
