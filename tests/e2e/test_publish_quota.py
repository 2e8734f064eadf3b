"""The publish quota is the user's, across sockets and server processes (PUBLISH_BYTES_PER_SECOND).

With a quota per connection, 20 sockets of one user, each under its own, wrote 54 MB into Redis
in 10 s. Two real daphne processes share one Redis; ten sockets of one user on each publish, each
socket well under the quota on its own: together they are refused past the user's quota, on both
processes, and Redis holds no more than the quota let through.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from .client import Inbox

pytestmark = [pytest.mark.e2e]

QUOTA = 1024  # bytes per second (the smallest allowed), one second's worth at once
DATA = "x" * 400  # about 470 bytes as stored: two of them are under one socket's second's worth
SOCKETS = 20  # MAX_CONNECTIONS_PER_USER
WAIT = 30.0  # a bound on waiting for the replies, never a measurement


async def test_sockets_of_one_user_on_two_processes_share_one_publish_quota(
    servers, ws, new_user, tokens, redis_url, redis_prefix
):
    first, second = await servers(2, REALTIME_PUBLISH_BYTES_PER_SECOND=QUOTA)
    user = await new_user("ann")
    inboxes = [
        Inbox(await ws((first, second)[n % 2], token=(await tokens(user))[0], welcome=True), f"s{n}")
        for n in range(SOCKETS)
    ]
    started = time.monotonic()
    sockets = [n for _ in range(2) for n in range(SOCKETS)]  # two publications per socket, all at once
    sent = [await inboxes[n].start({"type": "publish", "channel": f"public:q{n}", "data": DATA}) for n in sockets]
    replies = list(zip(sockets, await asyncio.wait_for(asyncio.gather(*sent), WAIT), strict=True))
    elapsed = time.monotonic() - started

    refused = [(n, reply) for n, reply in replies if reply["type"] == "error"]
    assert {reply["code"] for _, reply in refused} == {"rate_limited"}
    assert {n % 2 for n, _ in refused} == {0, 1}  # refused on both processes
    published = [reply for _, reply in replies if reply["type"] == "published"]
    assert published  # the first fits a full quota

    client = aioredis.Redis.from_url(redis_url)
    try:
        stored = [item for n in range(SOCKETS) for item in await client.lrange(f"{redis_prefix}:h:public:q{n}", 0, -1)]
    finally:
        await client.aclose()
    assert len(stored) == len(published)  # what was refused was not stored
    stored_bytes = sum(len(item) for item in stored)
    print(f"{len(published)} of {len(replies)} published, {stored_bytes} bytes stored in {elapsed:.2f} s")
    assert stored_bytes <= QUOTA * (1 + elapsed)  # one bucket for the user: a second's worth, then the rate
