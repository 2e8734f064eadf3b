"""A Redis rolled back under a real daphne process: the epoch must change (PROTOCOL §4).

A private redis-server takes a snapshot, gets more publications, and is then started
again from that *older* snapshot (as a restart from an old RDB file, or a failover to a
replica that lagged, would do). Its channel hash then holds the old epoch with the old,
smaller offset. Were that epoch kept, the next publications would get positions that
already named other publications, and a client recovering from what it had would be told
`recovered: true` with publications missing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .client import Inbox
from .redis_server import private_redis
from .test_channels import inbox, subscribe

pytestmark = [pytest.mark.e2e]

CHANNEL = "public:rollback"
WAIT = 20.0  # a bound on waiting for a frame, far above need; never a measurement

# While Redis is down the fan-out listener and the node's beat log that they lost it (warnings, no
# traceback); a request that meets the outage is answered `unavailable`. This test is about positions.
REDIS_OUTAGE = r"redis\.exceptions\.ConnectionError|ConnectionRefusedError"


class Positions:
    """Every position the test was shown, and what it named: one publication per position, ever."""

    def __init__(self) -> None:
        self.named: dict[tuple[str, int], Any] = {}

    def saw(self, epoch: str, offset: int, data: Any) -> None:
        key = (epoch, offset)
        assert self.named.setdefault(key, data) == data, f"{key} named {self.named[key]} and then {data}"


async def publish(box: Inbox, positions: Positions, n: int) -> dict[str, Any]:
    reply = await box.request({"type": "publish", "channel": CHANNEL, "data": {"n": n}}, WAIT)
    assert reply["type"] == "published", reply
    positions.saw(reply["epoch"], reply["offset"], {"n": n})
    return reply


async def publisher_and_listener(launch, ws, new_user, tokens, redis_server) -> tuple[Inbox, Inbox]:
    """A server on the private Redis, and two sockets of one user: one to publish, one subscribed to CHANNEL."""
    launch.tolerate(REDIS_OUTAGE)
    server = launch(REDIS_URL=redis_server.url)
    await server.wait_ready()
    access, _ = await tokens(await new_user("ann"))
    publisher = await inbox(ws, server, access, "publisher")
    listener = await inbox(ws, server, access, "listener")
    await subscribe(listener, CHANNEL)
    return publisher, listener


@pytest.fixture
async def redis_server(tmp_path, redis_prefix):
    """A private redis-server (snapshots on request only) for the servers under test."""
    async with private_redis(tmp_path / "redis", redis_prefix) as server:
        yield server


async def test_a_redis_restarted_from_an_older_snapshot_mints_a_new_epoch(
    launch, ws, new_user, tokens, redis_server, tmp_path
):
    publisher, listener = await publisher_and_listener(launch, ws, new_user, tokens, redis_server)
    positions = Positions()

    for n in (1, 2, 3):
        await publish(publisher, positions, n)
    snapshot = await redis_server.save_snapshot(tmp_path / "older.rdb")
    for n in (4, 5, 6):
        last = await publish(publisher, positions, n)
    await listener.wait_for(lambda: listener.last_offset.get(CHANNEL) == last["offset"], WAIT, "the 6th message")
    old_epoch = last["epoch"]

    redis_server.stop()
    redis_server.roll_back_to(snapshot)
    await redis_server.start().wait_ready()

    # The server's fan-out listener reconnects and the live subscription checks its position: its
    # history is gone, so it ends (the client would recover).
    ended = await listener.wait_frame({"type": "unsubscribed", "channel": CHANNEL}, WAIT)
    assert ended["reason"] == "insufficient_state", ended
    for n in (7, 8, 9, 10):
        newest = await publish(publisher, positions, n)
    assert newest["epoch"] != old_epoch, "a rolled-back Redis kept the epoch: positions are named twice"

    # A client recovering from the last position it had, and one from the snapshot's.
    for seen in (last, {"epoch": old_epoch, "offset": 3}):
        reply = await subscribe(listener, CHANNEL, recover={"epoch": seen["epoch"], "offset": seen["offset"]})
        assert (reply["recovered"], reply["epoch"]) == (False, newest["epoch"]), reply
        assert reply["offset"] == newest["offset"], reply
        for publication in reply["publications"]:
            positions.saw(publication["epoch"], publication["offset"], publication["data"])
        await listener.request({"type": "unsubscribe", "channel": CHANNEL}, WAIT)

    # From the new epoch on, recovery is complete again, and its positions are the ones published.
    first_new = min(offset for epoch, offset in positions.named if epoch == newest["epoch"])
    reply = await subscribe(listener, CHANNEL, recover={"epoch": newest["epoch"], "offset": first_new - 1})
    assert reply["recovered"] is True, reply
    for publication in reply["publications"]:
        positions.saw(publication["epoch"], publication["offset"], publication["data"])
    assert [p["data"]["n"] for p in reply["publications"]] == list(range(7, 11))
    for frame in listener.of_type("message", CHANNEL):
        positions.saw(frame["epoch"], frame["offset"], frame["data"])
    await asyncio.gather(publisher.stop(), listener.stop())
