"""PROTOCOL section 4 over sockets, on both backends: channels, recovery, history, presence."""

import asyncio
import json

import pytest

from realtime.core.frames import publication_parts
from realtime.engine import get_engine
from realtime.models import Room
from realtime.pubsub import presence
from realtime.pubsub.publishing import publish
from tests.conftest import override_realtime
from tests.integration.lossy import break_presence, echoing_fanout, lossy_fanout

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def messages(socket, count):
    """The next `count` message pushes (skipping pings)."""
    return [await socket.recv_type("message") for _ in range(count)]


async def test_subscribe_publish_deliver(backend, login):
    ann, bob = await login("ann"), await login("bob")
    subscribed = await ann.request({"type": "subscribe", "id": 1, "channel": "public:lobby"})
    assert subscribed == {
        "type": "subscribed",
        "id": 1,
        "channel": "public:lobby",
        "epoch": subscribed["epoch"],
        "offset": 0,
        "recovered": False,
        "publications": [],
    }
    published = await bob.request({"type": "publish", "id": 2, "channel": "public:lobby", "data": {"text": "hi"}})
    assert published == {
        "type": "published",
        "id": 2,
        "channel": "public:lobby",
        "epoch": subscribed["epoch"],
        "offset": 1,
    }
    message = await ann.recv_type("message")
    assert message["channel"] == "public:lobby" and message["offset"] == 1 and message["epoch"] == subscribed["epoch"]
    assert message["data"] == {"text": "hi"} and message["user"] == bob.user.pk and isinstance(message["ts"], int)


async def test_a_publisher_gets_its_own_publication_when_subscribed(backend, login):
    ann = await login()
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:a"})
    await ann.recv_type("join")
    await ann.send({"type": "publish", "id": 2, "channel": "public:a", "data": 5})
    frames = [await ann.recv(), await ann.recv()]
    assert sorted(f["type"] for f in frames) == ["message", "published"]
    assert next(f for f in frames if f["type"] == "message")["user"] == ann.user.pk


async def test_server_side_publish_reaches_sockets(backend, login):
    ann = await login()
    await ann.request({"type": "subscribe", "id": 1, "channel": f"user:{ann.user.pk}"})
    published = await publish(f"user:{ann.user.pk}", {"unread": 3})
    message = await ann.recv_type("message")
    assert message["user"] is None and message["offset"] == published.offset and message["data"] == {"unread": 3}


async def test_recover_replays_exactly_the_missed_publications(backend, login):
    ann = await login()
    first = await publish("public:a", 1)
    for n in range(2, 6):
        await publish("public:a", n)
    reply = await ann.request(
        {"type": "subscribe", "id": 1, "channel": "public:a", "recover": {"epoch": first.epoch, "offset": 2}}
    )
    assert reply["recovered"] is True and reply["offset"] == 5
    assert [p["data"] for p in reply["publications"]] == [3, 4, 5]
    assert [p["offset"] for p in reply["publications"]] == [3, 4, 5]
    await publish("public:a", 6)
    assert (await ann.recv_type("message"))["offset"] == 6


async def test_recover_from_another_epoch_is_not_recovered(backend, login):
    ann = await login()
    await publish("public:a", 1)
    reply = await ann.request(
        {"type": "subscribe", "id": 1, "channel": "public:a", "recover": {"epoch": "gone", "offset": 0}}
    )
    assert reply["recovered"] is False and reply["offset"] == 1
    assert [p["data"] for p in reply["publications"]] == [1]  # the current epoch's, from its first (§4)


async def test_unsubscribe(backend, login):
    ann, bob = await login("ann"), await login("bob")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:a"})
    await bob.request({"type": "subscribe", "id": 1, "channel": "public:a"})
    assert await ann.request({"type": "unsubscribe", "id": 2, "channel": "public:a"}) == {
        "type": "unsubscribed",
        "id": 2,
        "channel": "public:a",
    }
    await publish("public:a", "after")
    assert (await bob.recv_type("message"))["data"] == "after"
    assert await ann.request({"type": "ping", "id": 3}) == {"type": "pong", "id": 3}


@pytest.mark.parametrize("kind", ["subscribe", "publish", "history", "presence"])
async def test_a_channel_name_with_a_trailing_newline_is_a_bad_request(login, kind):
    ann = await login()
    reply = await ann.request({"type": kind, "id": 8, "channel": "public:lobby\n", "data": 1})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "bad_request", 8), reply


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "subscribe", "channel": "nowhere:a"}, "unknown_namespace"),
        ({"type": "publish", "channel": "nowhere:a", "data": 1}, "unknown_namespace"),
        ({"type": "history", "channel": "nowhere:a"}, "unknown_namespace"),
        ({"type": "presence", "channel": "nowhere:a"}, "unknown_namespace"),
        ({"type": "unsubscribe", "channel": "nowhere:a"}, "unknown_namespace"),
        ({"type": "unsubscribe", "channel": "public:never"}, "not_subscribed"),
        ({"type": "subscribe", "channel": "user:999999"}, "permission_denied"),
        ({"type": "history", "channel": "user:999999"}, "permission_denied"),
        ({"type": "subscribe", "channel": "room:kitchen"}, "permission_denied"),
        ({"type": "publish", "channel": "room:kitchen", "data": 1}, "permission_denied"),
        ({"type": "presence", "channel": "room:kitchen"}, "permission_denied"),
        ({"type": "subscribe", "channel": "room:no-such-room"}, "permission_denied"),
    ],
)
async def test_denied_requests(backend, login, frame, code):
    await Room.objects.acreate(slug="kitchen", name="Kitchen")
    ann = await login()
    reply = await ann.request({**frame, "id": 7})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", code, 7), reply


async def test_user_namespace_rules(backend, login):
    ann = await login()
    own = f"user:{ann.user.pk}"
    assert (await ann.request({"type": "subscribe", "id": 1, "channel": own}))["type"] == "subscribed"
    denied = await ann.request({"type": "publish", "id": 2, "channel": own, "data": 1})
    assert denied["code"] == "permission_denied"
    no_presence = await ann.request({"type": "presence", "id": 3, "channel": own})
    assert no_presence["code"] == "permission_denied"


async def test_already_subscribed_and_the_subscription_limit(backend, login):
    with override_realtime({"MAX_SUBSCRIPTIONS": 2}):
        ann = await login()
        await ann.request({"type": "subscribe", "id": 1, "channel": "public:a"})
        again = await ann.request({"type": "subscribe", "id": 2, "channel": "public:a"})
        assert again["code"] == "already_subscribed"
        await ann.request({"type": "subscribe", "id": 3, "channel": "public:b"})
        over = await ann.request({"type": "subscribe", "id": 4, "channel": "public:c"})
        assert over["code"] == "limit_exceeded" and over["id"] == 4


async def test_rooms_are_for_members(backend, login, make_user):
    ann = await login("ann")
    room = await Room.objects.acreate(slug="kitchen", name="Kitchen")
    await room.members.aadd(ann.user)
    bob = await login("bob")
    assert (await ann.request({"type": "subscribe", "id": 1, "channel": "room:kitchen"}))["type"] == "subscribed"
    assert (await ann.request({"type": "publish", "id": 2, "channel": "room:kitchen", "data": 1}))["type"] == (
        "published"
    )
    assert (await bob.request({"type": "subscribe", "id": 1, "channel": "room:kitchen"}))["code"] == (
        "permission_denied"
    )


async def test_removing_a_member_ends_the_subscription(backend, login):
    ann = await login("ann")
    room = await Room.objects.acreate(slug="kitchen", name="Kitchen")
    await room.members.aadd(ann.user)
    other_tab = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "room:kitchen"})
    await ann.request({"type": "publish", "id": 2, "channel": "room:kitchen", "data": 1})
    await ann.recv_type("message")
    await other_tab.request({"type": "publish", "id": 1, "channel": "room:kitchen", "data": 2})
    assert (await ann.recv_type("message"))["data"] == 2
    await room.members.aremove(ann.user)
    assert await ann.recv_type("unsubscribed") == {
        "type": "unsubscribed",
        "channel": "room:kitchen",
        "reason": "removed",
    }
    # the permission each socket remembered is forgotten too
    for socket in (ann, other_tab):
        reply = await socket.request({"type": "publish", "id": 9, "channel": "room:kitchen", "data": 3})
        assert reply["code"] == "permission_denied"


async def test_history(backend, login):
    ann = await login()
    for n in range(1, 6):
        await publish("public:h", n)
    latest = await ann.request({"type": "history", "id": 1, "channel": "public:h", "limit": 2})
    assert [p["data"] for p in latest["publications"]] == [4, 5] and latest["offset"] == 5
    everything = await ann.request({"type": "history", "id": 2, "channel": "public:h"})
    assert [p["offset"] for p in everything["publications"]] == [1, 2, 3, 4, 5]
    since = await ann.request(
        {
            "type": "history",
            "id": 3,
            "channel": "public:h",
            "since": {"epoch": latest["epoch"], "offset": 1},
            "limit": 2,
        }
    )
    assert [p["offset"] for p in since["publications"]] == [2, 3]
    assert since["type"] == "history" and since["epoch"] == latest["epoch"]


async def test_presence_with_two_users_and_several_tabs(backend, login):
    ann1 = await login("ann")
    await ann1.request({"type": "subscribe", "id": 1, "channel": "public:p"})
    assert (await ann1.recv_type("join"))["user"]["username"] == "ann"
    ann2 = await login("ann")
    await ann2.request({"type": "subscribe", "id": 1, "channel": "public:p"})
    bob = await login("bob")
    await bob.request({"type": "subscribe", "id": 1, "channel": "public:p"})
    join = await ann1.recv_type("join")
    assert join == {"type": "join", "channel": "public:p", "user": {"id": bob.user.pk, "username": "bob"}}
    members = await bob.request({"type": "presence", "id": 2, "channel": "public:p"})
    assert sorted((m["username"], m["connections"]) for m in members["members"]) == [("ann", 2), ("bob", 1)]
    await ann2.request({"type": "unsubscribe", "id": 3, "channel": "public:p"})
    await ann1.request({"type": "unsubscribe", "id": 3, "channel": "public:p"})
    leave = await bob.recv_type("leave")
    assert leave == {"type": "leave", "channel": "public:p", "user": {"id": ann1.user.pk, "username": "ann"}}
    members = await bob.request({"type": "presence", "id": 4, "channel": "public:p"})
    assert [(m["username"], m["connections"]) for m in members["members"]] == [("bob", 1)]


@override_realtime({"PRESENCE_GRACE": 0.3})
async def test_a_dropped_socket_leaves_after_the_grace(backend, login):
    bob = await login("bob")
    await bob.request({"type": "subscribe", "id": 1, "channel": "public:g"})
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:g"})
    await bob.recv_type("join")
    await ann.close()
    members = await bob.request({"type": "presence", "id": 2, "channel": "public:g"})
    assert sorted(m["username"] for m in members["members"]) == ["ann", "bob"]  # within the grace
    assert (await bob.recv_type("leave"))["user"]["username"] == "ann"


async def test_publishers_during_a_recovering_subscribe_lose_and_repeat_nothing(backend, login):
    """Publications keep coming while a subscriber joins mid-stream with `recover`."""
    ann = await login()
    first = await publish("public:busy", 0)
    total = 150

    async def publisher():
        for n in range(1, total):
            await publish("public:busy", n)
            await asyncio.sleep(0)

    task = asyncio.ensure_future(publisher())
    reply = await ann.request(
        {"type": "subscribe", "id": 1, "channel": "public:busy", "recover": {"epoch": first.epoch, "offset": 1}}
    )
    offsets = [p["offset"] for p in reply["publications"]]
    while not offsets or offsets[-1] < total:
        offsets.append((await ann.recv_type("message"))["offset"])
    await task
    assert offsets == list(range(2, total + 1))


async def test_messages_lost_on_the_way_are_filled_from_history(backend, login):
    with lossy_fanout({2, 3, 5, 8, 9}):
        ann = await login()
        await ann.request({"type": "subscribe", "id": 1, "channel": "public:lossy"})
        for n in range(1, 11):
            await publish("public:lossy", n)
        received = await messages(ann, 10)
    assert [m["offset"] for m in received] == list(range(1, 11))
    assert [m["data"] for m in received] == list(range(1, 11))


async def test_messages_heard_twice_are_delivered_once(backend, login):
    with echoing_fanout():
        ann = await login()
        await ann.request({"type": "subscribe", "id": 1, "channel": "public:echo"})
        for n in range(1, 6):
            await publish("public:echo", n)
        assert [m["offset"] for m in await messages(ann, 5)] == [1, 2, 3, 4, 5]
        assert await ann.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}


async def test_lost_history_ends_the_subscription_with_insufficient_state(backend, login):
    ann = await login()
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:flushed"})
    await publish("public:flushed", 1)
    assert (await ann.recv_type("message"))["offset"] == 1
    engine = get_engine()
    if backend == "memory":
        engine.forget()
    else:
        await engine.redis.delete(engine.key("m", "public:flushed"), engine.key("h", "public:flushed"))
    await publish("public:flushed", "after the flush")
    ended = await ann.recv_type("unsubscribed")
    assert ended == {"type": "unsubscribed", "channel": "public:flushed", "reason": "insufficient_state"}
    again = await ann.request(
        {"type": "subscribe", "id": 2, "channel": "public:flushed", "recover": {"epoch": "old", "offset": 1}}
    )
    assert again["recovered"] is False and again["offset"] == 1


async def test_unavailable_when_redis_is_down(login, redis_url, redis_prefix):
    with override_realtime(REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix):
        ann = await login()  # admitted while Redis is up (its connection slot is counted there)
        with override_realtime(REDIS_URL="redis://127.0.0.1:1/0"):  # then Redis goes away
            for frame in (
                {"type": "subscribe", "channel": "public:a"},
                {"type": "publish", "channel": "public:a", "data": 1},
                {"type": "history", "channel": "public:a"},
                {"type": "presence", "channel": "public:a"},
            ):
                reply = await ann.request({**frame, "id": 5})
                assert (reply["code"], reply["id"]) == ("unavailable", 5), reply
            assert await ann.request({"type": "ping", "id": 6}) == {"type": "pong", "id": 6}


def test_publications_are_json_objects_in_history_texts():
    head, tail = publication_parts("public:a", {"é": [1]}, None, 5)
    assert json.loads(head + '"epoch":"e","offset":1' + tail) == {
        "channel": "public:a",
        "epoch": "e",
        "offset": 1,
        "data": {"é": [1]},
        "user": None,
        "ts": 5,
    }


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_json_numbers_cannot_be_published(backend, login, number):
    ann = await login()
    await ann.send('{"type": "publish", "id": 2, "channel": "public:x", "data": ' + number + "}")
    reply = await ann.recv_type("error")
    assert reply["code"] == "bad_request"
    history = await ann.request({"type": "history", "id": 3, "channel": "public:x"})
    assert history["publications"] == [] and history["offset"] == 0


async def frames_until_pong(socket, request_id):
    """Every frame up to the pong of a ping sent now (pings skipped): what the socket had queued before it."""
    await socket.send({"type": "ping", "id": request_id})
    seen = []
    while (frame := await socket.recv())["type"] != "pong":
        if frame["type"] != "ping":
            seen.append(frame)
    assert frame == {"type": "pong", "id": request_id}
    return seen


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_a_presence_failure_at_subscribe_is_its_one_reply_and_nothing_stays_subscribed(backend, login):
    bob = await login("bob")
    await bob.request({"type": "subscribe", "id": 1, "channel": "public:p"})
    ann = await login("ann")
    engine = await break_presence("public:p")
    reply = await ann.request({"type": "subscribe", "id": 2, "channel": "public:p"})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "unavailable", 2), reply
    await publish("public:p", "after the failure")
    assert (await bob.recv_type("message"))["data"] == "after the failure"  # the fan-out went past ann too
    assert await frames_until_pong(ann, 3) == []  # no second reply, no message: ann is not subscribed
    assert ann.welcome["session"] not in presence.local().get("public:p", set())  # the beat keeps nothing alive
    await engine.redis.delete(engine.key("pz", "public:p"))
    again = await ann.request({"type": "subscribe", "id": 4, "channel": "public:p"})
    assert again["type"] == "subscribed" and again["offset"] == 1
    reply = await ann.request({"type": "presence", "id": 5, "channel": "public:p"})
    assert "ann" in {member["username"] for member in reply["members"]}  # (bob's entry went with the broken set)
