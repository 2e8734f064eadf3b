"""Control events on the switchboard (realtime/pubsub/switchboard.py): no channel per socket, nothing left
behind, and a revocation that a broken fan-out connection kept from a socket still closes it."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async

from realtime.engine import get_engine
from realtime.pubsub.switchboard import switchboard
from realtime.sessions.control import disconnect_user, now_us
from realtime.sessions.live import live
from realtime.socket.consumer import background_tasks
from tests.conftest import make_tokens
from tests.integration.conftest import RECEIVE_TIMEOUT
from tests.recorder import Recorder

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def test_sockets_are_filed_by_user_and_address_and_leave_nothing_behind(engine, login, connect):
    ann = await login("ann")
    ann_again = await connect(token=(await sync_to_async(make_tokens)(ann.user))[0])
    await ann_again.recv_type("welcome")
    bob = await login("bob")
    board = switchboard()
    consumers = {consumer.user.username: consumer for consumer in live() if consumer.user is not None}
    assert set(board.by_user) == {str(ann.user.pk), str(bob.user.pk)}
    assert len(board.by_user[str(ann.user.pk)]) == 2
    assert board.by_address[consumers["bob"].address] is consumers["bob"]
    assert len({consumer.address for consumer in live()}) == 3  # one address each
    for socket in (ann, ann_again, bob):
        await socket.close()
    assert (board.by_user, board.by_address, board.by_session) == ({}, {}, {})


async def test_a_disconnect_for_one_user_closes_theirs_only(engine, login):
    ann, bob = await login("ann"), await login("bob")
    await disconnect_user(ann.user.pk, 4503)
    await ann.expect_disconnect(4503, "forbidden")
    assert (await bob.request({"type": "subscribe", "id": 1, "channel": "public:still"}))["type"] == "subscribed"


async def _kill_fanout_connections(redis_url: str, prefix: str) -> int:
    """What a network blip does: Redis drops this process's fan-out connection (the listener reconnects)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        killed = 0
        for entry in await client.client_list():
            if entry.get("name") == f"{prefix}:fanout":
                killed += await client.client_kill_filter(_id=entry["id"])
        return killed
    finally:
        await client.aclose()


async def test_a_revocation_missed_while_the_fanout_connection_was_down_closes_the_socket(
    redis_layer, redis_url, redis_prefix, login
):
    """The revocation's control event is never sent here (as if it went while the connection was down):
    only the re-check after the reconnect can close the socket."""
    ann, bob = await login("ann"), await login("bob")
    await get_engine().record_revocation(str(ann.user.pk), time.time_ns() // 1000)
    assert await _kill_fanout_connections(redis_url, redis_prefix) >= 1
    await ann.expect_disconnect(4503, "forbidden")
    # bob was not revoked: still served, and control events reach him again after the reconnect.
    assert (await bob.request({"type": "subscribe", "id": 1, "channel": "public:after"}))["type"] == "subscribed"
    await disconnect_user(bob.user.pk, 4011)
    await bob.expect_disconnect(4011)


async def test_a_revocation_before_the_socket_authenticated_does_not_close_it_at_a_reconnect(
    redis_layer, redis_url, redis_prefix, connect, make_user
):
    """The re-check closes only sockets whose credential was checked before the revocation."""
    carl = await sync_to_async(make_user)("carl")
    await get_engine().record_revocation(str(carl.pk), time.time_ns() // 1000 - 1_000_000)
    socket = await connect(token=(await sync_to_async(make_tokens)(carl))[0])  # issued after that revocation
    await socket.recv_type("welcome")
    consumer = next(c for c in live() if c.user is not None and c.user.pk == carl.pk)
    checked = asyncio.get_running_loop().create_future()
    original = consumer.control_gap

    def gap() -> None:
        original()  # observed, not replaced: the real re-check runs
        if not checked.done():
            checked.set_result(None)

    consumer.control_gap = gap
    assert await _kill_fanout_connections(redis_url, redis_prefix) >= 1
    await asyncio.wait_for(checked, 10)
    await asyncio.gather(*list(background_tasks()))  # the re-check itself, to its end
    assert not consumer.closing
    assert (await socket.request({"type": "subscribe", "id": 1, "channel": "public:kept"}))["type"] == "subscribed"


async def test_a_disconnect_sent_between_a_sockets_check_and_its_join_still_reaches_it(engine):
    """The credentials were checked, then the user was revoked, then the socket joined: it is told at once."""
    board = switchboard()
    await board.listen()
    checked_before = now_us()
    await disconnect_user("ann", 4503)
    await asyncio.wait_for(board.ping(), RECEIVE_TIMEOUT)  # the disconnect went by, nobody was there
    checked_after = now_us()
    late, fresh, other = Recorder(), Recorder(), Recorder()
    await board.join(late, board.address(), "ann", since_us=checked_before)
    await board.join(fresh, board.address(), "ann", since_us=checked_after)  # a token checked after it
    await board.join(other, board.address(), "bob", since_us=checked_before)
    assert [(event["do"], event["user"], event["code"]) for event in late.events] == [("disconnect", "ann", 4503)]
    assert fresh.events == other.events == []
