"""The sockets' user cache (realtime/auth/cache.py) against revocations made by another process.

Server A has the user cached by a first connect. Then a logout (through server B's HTTP API),
a deactivation or a password change (ORM saves in the test process, on the same Redis) happens
elsewhere, and the very next connect on A with a token issued before it must be refused, never
let through by what A kept. A fresh token after a logout is still welcome.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from .web import logout

pytestmark = [pytest.mark.e2e]


async def warm(ws, server, access: str, times: int = 2) -> None:
    """Connect `times` times with `access` (the first loads the user, the next ones use A's cache)."""
    for _ in range(times):
        client = await ws(server, token=access, welcome=True)
        await client.close()


async def refused(ws, server, access: str) -> None:
    client = await ws(server, token=access)
    await client.expect_disconnect(4501, "unauthorized")


async def test_a_logout_on_b_refuses_the_next_connect_on_a(servers, ws, new_user, tokens):
    a, b = await servers(2)
    ann = await new_user("ann")
    access, refresh = await tokens(ann)
    await warm(ws, a, access)
    assert await asyncio.to_thread(logout, b.url, access, refresh) == 204
    await refused(ws, a, access)
    await refused(ws, b, access)
    fresh, _ = await tokens(ann)  # issued after the logout: the cache must not refuse it
    await ws(a, token=fresh, welcome=True)


@pytest.mark.parametrize("change", ["deactivate", "password"])
async def test_a_change_made_in_another_process_refuses_the_next_connect_on_a(
    servers, ws, new_user, tokens, redis_layer, change
):
    (a,) = await servers(1)
    ann = await new_user("ann")
    access, _ = await tokens(ann)
    await warm(ws, a, access)
    if change == "deactivate":
        ann.is_active = False
    else:
        await sync_to_async(ann.set_password)("another-horse-battery")
    await ann.asave()  # in this process: the revocation is recorded in the servers' Redis, then the database
    await refused(ws, a, access)


async def test_without_the_cache_the_database_answers_every_connect(servers, ws, new_user, tokens):
    (a,) = await servers(1, REALTIME_USER_CACHE_SECONDS=0)
    (b,) = await servers(1)
    ann = await new_user("ann")
    access, refresh = await tokens(ann)
    await warm(ws, a, access)
    assert await asyncio.to_thread(logout, b.url, access, refresh) == 204
    await refused(ws, a, access)
