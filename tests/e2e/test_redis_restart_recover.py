"""A Redis restarted without its data under a real daphne process: `recover` carries the new epoch (PROTOCOL §4).

A private redis-server (no persistence) is killed and started again empty: every channel's
history and epoch are gone. The live subscription ends (`insufficient_state`), more is
published, and a client recovering from the last position it had is told `recovered: false`;
what was published since the loss must reach it all the same, in the reply's publications
(the new epoch's from its first), and the live stream follows them without a gap.
"""

from __future__ import annotations

import asyncio

import pytest

from .test_channels import subscribe
from .test_redis_rollback import WAIT, Positions, publish, publisher_and_listener, redis_server  # noqa: F401 - a fixture

pytestmark = [pytest.mark.e2e]

CHANNEL = "public:rollback"


async def test_recover_after_redis_lost_everything_carries_what_was_published_since(
    launch,
    ws,
    new_user,
    tokens,
    redis_server,  # noqa: F811 - the fixture imported above
):
    publisher, listener = await publisher_and_listener(launch, ws, new_user, tokens, redis_server)
    positions = Positions()
    for n in (1, 2, 3):
        last = await publish(publisher, positions, n)
    await listener.wait_for(lambda: listener.last_offset.get(CHANNEL) == last["offset"], WAIT, "the 3rd message")

    redis_server.kill9()  # no persistence: it comes back empty
    await redis_server.start().wait_ready()
    ended = await listener.wait_frame({"type": "unsubscribed", "channel": CHANNEL}, WAIT)
    assert ended["reason"] == "insufficient_state", ended
    for n in (4, 5, 6):
        newest = await publish(publisher, positions, n)
    assert newest["epoch"] != last["epoch"]

    reply = await subscribe(listener, CHANNEL, recover={"epoch": last["epoch"], "offset": last["offset"]})
    assert (reply["recovered"], reply["epoch"], reply["offset"]) == (False, newest["epoch"], newest["offset"])
    for publication in reply["publications"]:
        positions.saw(publication["epoch"], publication["offset"], publication["data"])
    assert [p["data"]["n"] for p in reply["publications"]] == [4, 5, 6]  # everything since the loss
    after = len(listener.frames)
    following = await publish(publisher, positions, 7)
    message = await listener.wait_frame({"type": "message", "channel": CHANNEL}, WAIT, start=after)
    assert (message["epoch"], message["offset"]) == (following["epoch"], following["offset"])
    assert following["offset"] == newest["offset"] + 1
    await asyncio.gather(publisher.stop(), listener.stop())
