"""Subscriptions against a fake server: resume, recovery, dedupe, gaps, server unsubscribes, iteration."""

import asyncio

import pytest
from realtime_client import ClientState, Position, Publication, SubscribedEvent, SubscriptionState

from .conftest import Recorder, connect, reconnect, roundtrip
from .fake_server import publication

pytestmark = pytest.mark.unit

S = SubscriptionState


async def subscribed_sub(server, client, channel="room:a", offset=3, epoch="e1"):
    """Connect, subscribe `channel` at (`epoch`, `offset`); returns (conn, sub, publications, subscribed events)."""
    sub = client.subscribe(channel)
    pubs, events = Recorder(), Recorder()
    sub.on("publication", pubs)
    sub.on("subscribed", events)
    conn, _ = await connect(server, client)
    request = await conn.expect("subscribe")
    assert request == {"type": "subscribe", "id": request["id"], "channel": channel}
    await conn.subscribed(request, epoch, offset)
    await events.wait()
    return conn, sub, pubs, events


def offsets(pubs):
    return [pub.offset for pub in pubs.items]


async def test_subscribe_returns_one_object_per_channel(server, make_client):
    client = make_client(server.url)
    sub = client.subscribe("room:a")
    assert client.subscribe("room:a") is sub and sub.state is S.SUBSCRIBING
    conn, sub, pubs, events = await subscribed_sub(server, client)
    assert events.items == [SubscribedEvent("room:a", "e1", 3, recovering=False, recovered=False)]
    assert sub.state is S.SUBSCRIBED and sub.position == Position("e1", 3)
    assert client.subscribe("room:a") is sub
    await roundtrip(conn)  # the second subscribe() sent nothing


async def test_live_messages_are_deduped_by_offset(server, make_client):
    client = make_client(server.url)
    conn, sub, pubs, _ = await subscribed_sub(server, client)
    for offset in (4, 5, 5, 3, 4, 6):
        await conn.message("room:a", offset, {"n": offset})
    await pubs.wait(count=3)
    await roundtrip(conn)
    assert offsets(pubs) == [4, 5, 6]
    assert pubs.items[0] == Publication("room:a", "e1", 4, {"n": 4}, 7, 1004)
    assert sub.position == Position("e1", 6)


async def test_a_gap_resubscribes_with_recover(server, make_client):
    client = make_client(server.url)
    conn, sub, pubs, events = await subscribed_sub(server, client)
    await conn.message("room:a", 4)
    await conn.message("room:a", 7)  # 5 and 6 are missing
    assert (await conn.expect("unsubscribe"))["channel"] == "room:a"
    request = await conn.expect("subscribe")
    assert request["recover"] == {"epoch": "e1", "offset": 4}
    assert sub.state is S.SUBSCRIBING
    replay = [publication("room:a", n) for n in (4, 5, 6, 7)]
    await conn.subscribed(request, "e1", 7, recovered=True, publications=replay)
    event = await events.wait(count=2)
    assert (event.recovering, event.recovered, event.publications) == (True, True, 4)
    await pubs.wait(count=4)
    assert offsets(pubs) == [4, 5, 6, 7]
    assert [pub.recovered for pub in pubs.items] == [False, True, True, True]


async def test_a_new_epoch_resubscribes_with_recover(server, make_client):
    client = make_client(server.url)
    conn, sub, pubs, events = await subscribed_sub(server, client)
    await conn.message("room:a", 1, epoch="e2")
    await conn.expect("unsubscribe")
    request = await conn.expect("subscribe")
    assert request["recover"] == {"epoch": "e1", "offset": 3}
    await conn.subscribed(request, "e2", 1, recovered=False, publications=[publication("room:a", 1, epoch="e2")])
    event = await events.wait(count=2)
    assert (event.epoch, event.recovering, event.recovered) == ("e2", True, False)
    await pubs.wait()
    assert sub.position == Position("e2", 1) and offsets(pubs) == [1]


async def test_resume_sends_session_and_positions(server, make_client):
    client = make_client(server.url)
    conn, sub, pubs, events = await subscribed_sub(server, client)
    await conn.message("room:a", 4)
    await pubs.wait()
    pending = client.subscribe("room:b")  # its subscribe never gets a reply
    await conn.expect("subscribe")
    await conn.close(1001)
    conn, auth = await reconnect(server, resumed=True)
    assert auth["resume"] == "s_1"
    assert auth["positions"] == {"room:a": {"epoch": "e1", "offset": 4}}  # room:b has no position yet
    plain = await conn.expect("subscribe")
    assert plain == {"type": "subscribe", "id": plain["id"], "channel": "room:b"}
    # The pushed `subscribed` of the resume replays from the position; duplicates are dropped.
    replay = [publication("room:a", n) for n in (4, 5, 6)]
    await conn.send({"type": "subscribed", "channel": "room:a", "epoch": "e1", "offset": 6, "recovered": True,
                     "publications": replay})  # fmt: skip
    await conn.subscribed(plain, "e1", 0)
    event = await events.wait(count=2)
    assert (event.recovering, event.recovered) == (True, True)
    await pubs.wait(count=3)
    assert offsets(pubs) == [4, 5, 6]
    await roundtrip(conn)
    assert pending.state is S.SUBSCRIBED and sub.state is S.SUBSCRIBED


async def test_already_subscribed_after_a_push_counts_as_success(server, make_client):
    client = make_client(server.url)
    sub = client.subscribe("room:b")
    conn, _ = await connect(server, client)
    await conn.expect("subscribe")
    await conn.close(1001)  # before any reply: room:b has no position
    conn, _ = await reconnect(server, resumed=True)
    request = await conn.expect("subscribe")
    # The server had restored room:b from its own record: it pushes first, then refuses the subscribe.
    await conn.send({"type": "subscribed", "channel": "room:b", "epoch": "e1", "offset": 2, "recovered": False,
                     "publications": []})  # fmt: skip
    await conn.reply(request, "error", code="already_subscribed", message="already subscribed")
    await roundtrip(conn)  # no unsubscribe / subscribe in between
    assert sub.state is S.SUBSCRIBED and sub.position == Position("e1", 2)


async def test_a_restored_channel_no_longer_wanted_is_unsubscribed(server, make_client):
    client = make_client(server.url)
    await connect(server, client)
    conn = server.accepted[0]
    await conn.send({"type": "subscribed", "channel": "room:old", "epoch": "e1", "offset": 0, "recovered": False})
    assert (await conn.expect("unsubscribe"))["channel"] == "room:old"


async def test_not_resumed_resubscribes_every_channel_with_recover(server, make_client):
    client = make_client(server.url)
    conn, a, _, _ = await subscribed_sub(server, client, "room:a", offset=5)
    b = client.subscribe("room:b")
    await conn.subscribed(await conn.expect("subscribe"), "e7", 3)
    client.subscribe("room:c")  # never answered
    await conn.expect("subscribe")
    await roundtrip(conn)
    assert b.position == Position("e7", 3)
    await conn.close(1011)
    conn, auth = await reconnect(server, session="s_2", resumed=False)
    assert auth["resume"] == "s_1" and set(auth["positions"]) == {"room:a", "room:b"}
    frames = {}
    for _ in range(3):
        frame = await conn.expect("subscribe")
        frames[frame["channel"]] = frame.get("recover")
    assert frames == {"room:a": {"epoch": "e1", "offset": 5}, "room:b": {"epoch": "e7", "offset": 3}, "room:c": None}
    assert client.session == "s_2"


async def test_unsubscribed_insufficient_state_recovers(server, make_client):
    client = make_client(server.url)
    conn, sub, _, events = await subscribed_sub(server, client)
    await conn.send({"type": "unsubscribed", "channel": "room:a", "reason": "insufficient_state"})
    request = await conn.expect("subscribe")
    assert request["recover"] == {"epoch": "e1", "offset": 3}
    await conn.subscribed(request, "e1", 9, recovered=False)
    event = await events.wait(count=2)
    assert (event.recovering, event.recovered) == (True, False)
    assert sub.position == Position("e1", 9)


async def test_unsubscribed_removed_is_terminal(server, make_client):
    client = make_client(server.url)
    conn, sub, _, _ = await subscribed_sub(server, client)
    ended, errors = Recorder(), Recorder()
    sub.on("unsubscribed", ended)
    sub.on("error", errors)
    iterated = []

    async def iterate():
        async for pub in sub:
            iterated.append(pub)

    iterator = asyncio.create_task(iterate())
    await conn.message("room:a", 4)
    await conn.send({"type": "unsubscribed", "channel": "room:a", "reason": "removed"})
    event = await ended.wait()
    assert event.reason == "removed" and errors.items[0].code == "removed"
    await asyncio.wait_for(iterator, 5)  # iteration ended
    assert [pub.offset for pub in iterated] == [4]
    assert sub.state is S.UNSUBSCRIBED and sub.position is None
    await conn.message("room:a", 5)
    await roundtrip(conn)  # no resubscribe
    await conn.close(1001)
    conn, _ = await reconnect(server, resumed=False)
    await roundtrip(conn)  # not resubscribed after a reconnect either


async def test_subscribe_errors(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    denied = client.subscribe("room:secret")
    ended, errors = Recorder(), Recorder()
    denied.on("unsubscribed", ended)
    denied.on("error", errors)
    await conn.reply(await conn.expect("subscribe"), "error", code="permission_denied", message="no")
    assert (await ended.wait()).reason == "permission_denied"
    assert errors.items[0].code == "permission_denied" and denied.state is S.UNSUBSCRIBED

    busy = client.subscribe("room:busy")
    busy_errors = Recorder()
    busy.on("error", busy_errors)
    await conn.reply(await conn.expect("subscribe"), "error", code="unavailable", message="redis down")
    retry = await conn.expect("subscribe")  # temporary: retried after a backoff delay
    assert retry["channel"] == "room:busy" and busy_errors.items[0].code == "unavailable"
    await conn.subscribed(retry, "e1", 0)
    await roundtrip(conn)
    assert busy.state is S.SUBSCRIBED


async def test_a_stale_subscribe_reply_is_dropped(server, make_client):
    client = make_client(server.url)
    conn, _ = await connect(server, client)
    sub = client.subscribe("room:a")
    events = Recorder()
    sub.on("subscribed", events)
    first = await conn.expect("subscribe")
    sub.unsubscribe()  # not awaited, then subscribe again at once (React StrictMode)
    client.subscribe("room:a")
    unsubscribe = await conn.expect("unsubscribe")
    second = await conn.expect("subscribe")
    await conn.subscribed(first, "e1", 100, publications=[publication("room:a", 100)])  # stale
    await conn.reply(unsubscribe, "unsubscribed", channel="room:a")
    await conn.subscribed(second, "e1", 5)
    await events.wait()
    await roundtrip(conn)
    assert [event.offset for event in events.items] == [5] and sub.position == Position("e1", 5)


async def test_unsubscribe_waits_for_the_reply(server, make_client):
    client = make_client(server.url)
    conn, sub, _, _ = await subscribed_sub(server, client)
    ended = Recorder()
    sub.on("unsubscribed", ended)
    task = asyncio.ensure_future(sub.unsubscribe())
    request = await conn.expect("unsubscribe")
    assert sub.state is S.UNSUBSCRIBED and not task.done()
    await conn.reply(request, "error", code="not_subscribed", message="no")  # never raises
    await asyncio.wait_for(task, 5)
    assert ended.items[0].reason == "unsubscribe"
    await sub.unsubscribe()  # a second time does nothing
    assert len(ended.items) == 1


async def test_throwing_callbacks_do_not_stop_delivery(server, make_client):
    client = make_client(server.url)
    conn, sub, pubs, _ = await subscribed_sub(server, client)

    def broken(pub):
        raise RuntimeError(f"boom {pub.offset}")

    async def broken_async(pub):
        raise ValueError("async boom")

    sub.on("publication", broken)
    sub.on("publication", broken_async)
    after = Recorder()
    sub.on("publication", after)
    for offset in (4, 5):
        await conn.message("room:a", offset)
    await after.wait(count=2)
    await client.errors.wait(lambda exc: isinstance(exc, ValueError), count=2)
    assert offsets(pubs) == [4, 5] and [pub.offset for pub in after.items] == [4, 5]
    assert sorted(str(exc) for exc in client.errors.items) == ["async boom", "async boom", "boom 4", "boom 5"]
    await roundtrip(conn)
    assert client.state is ClientState.CONNECTED


async def test_async_callbacks_run_in_order_and_may_make_requests(server, make_client):
    client = make_client(server.url)
    conn, sub, _, _ = await subscribed_sub(server, client)
    results = Recorder()

    async def echo(pub):
        results(await client.publish("room:echo", pub.data))

    sub.on("publication", echo)
    await conn.message("room:a", 4, "x")
    await conn.message("room:a", 5, "y")
    for offset in (10, 11):
        request = await conn.expect("publish")
        await conn.reply(request, "published", channel="room:echo", epoch="e1", offset=offset)
    await results.wait(count=2)
    assert [result.offset for result in results.items] == [10, 11]


async def test_iteration_keeps_publications_until_iterated_and_ends_on_close(server, make_client):
    client = make_client(server.url)
    conn, sub, pubs, _ = await subscribed_sub(server, client)
    await conn.message("room:a", 4)  # before anyone iterates: kept for the first iterator
    await pubs.wait()
    seen = []

    async def iterate():
        async for pub in sub:
            seen.append(pub.offset)
            if len(seen) == 2:
                await client.disconnect()

    iterator = asyncio.create_task(iterate())
    await conn.message("room:a", 5)
    await asyncio.wait_for(iterator, 5)
    assert seen == [4, 5] and client.state is ClientState.CLOSED


async def test_a_slow_iterator_drops_its_oldest_and_says_so(server, make_client):
    client = make_client(server.url, queue_size=2)
    conn, sub, pubs, _ = await subscribed_sub(server, client)
    errors = Recorder()
    sub.on("error", errors)
    iterator = aiter(sub)
    first = asyncio.create_task(anext(iterator))
    await conn.message("room:a", 4)
    assert (await asyncio.wait_for(first, 5)).offset == 4
    for offset in (5, 6, 7):
        await conn.message("room:a", offset)
    await pubs.wait(count=4)
    assert (await anext(iterator)).offset == 6
    assert errors.items[0].code == "overflow"
    assert (await anext(iterator)).offset == 7
    await iterator.aclose()


async def test_join_and_leave(server, make_client):
    client = make_client(server.url)
    conn, sub, _, _ = await subscribed_sub(server, client)
    joins, leaves = Recorder(), Recorder()
    sub.on("join", joins)
    sub.on("leave", leaves)
    await conn.send({"type": "join", "channel": "room:a", "user": {"id": 8, "username": "bo"}})
    await conn.send({"type": "leave", "channel": "room:a", "user": {"id": 8, "username": "bo"}})
    leave = await leaves.wait()
    assert joins.items[0].user.username == "bo" and leave.user.id == 8 and leave.channel == "room:a"


async def test_a_malformed_frame_is_reported_and_reading_goes_on(server, make_client):
    client = make_client(server.url)
    conn, sub, pubs, _ = await subscribed_sub(server, client)
    await conn.ws.send("not json")
    await conn.send({"type": "message", "channel": "room:a"})  # no epoch/offset
    await conn.send({"type": "mystery"})
    await conn.message("room:a", 4)
    await pubs.wait()
    assert len(client.errors.items) == 2 and client.state is ClientState.CONNECTED


@pytest.mark.parametrize("name", ["room:a\n", "room", "Room:a", "room:a b", 3])
def test_subscribe_refuses_what_is_not_a_channel_name(make_client, name):
    """The server's rule (a final newline included): the mistake is the caller's, said before any frame."""
    client = make_client("ws://127.0.0.1:9/ws/")
    with pytest.raises(ValueError, match="not a channel name"):
        client.subscribe(name)
