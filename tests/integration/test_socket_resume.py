"""PROTOCOL section 3: session resume, on both backends."""

import json
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async

from realtime.models import Connection, Room
from realtime.pubsub import presence
from realtime.pubsub.publishing import publish
from realtime.sessions import rows as sessions
from tests.conftest import make_tokens, override_realtime
from tests.integration.lossy import break_presence

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def drop(socket):
    """The connection is lost (no close frame): code 1006, resumable."""
    await socket.communicator.disconnect(code=1006)


async def auth_frame(socket, user, resume, positions=None):
    access, _ = await sync_to_async(make_tokens)(user)
    frame = {"type": "auth", "token": access, "id": 1, "resume": resume}
    if positions is not None:
        frame["positions"] = positions
    return await socket.request(frame)


def datas(frame):
    return [p["data"] for p in frame["publications"]]


async def test_resume_restores_subscriptions_with_the_missed_publications(backend, login, connect):
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:r"})
    await ann.request({"type": "subscribe", "id": 2, "channel": f"user:{ann.user.pk}"})
    await publish("public:r", 1)
    assert (await ann.recv_type("message"))["data"] == 1
    await drop(ann)
    await publish("public:r", 2)
    await publish("public:r", 3)
    await publish(f"user:{ann.user.pk}", "private")

    again = await connect()
    welcome = await auth_frame(again, ann.user, ann.welcome["session"])
    assert welcome["type"] == "welcome" and welcome["resumed"] is True
    assert welcome["session"] == ann.welcome["session"]
    restored = {}
    for _ in range(2):
        frame = await again.recv_type("subscribed")
        assert "id" not in frame and frame["recovered"] is True
        restored[frame["channel"]] = [p["data"] for p in frame["publications"]]
    # 1 again: delivered before the drop but never acknowledged (no pong), so it may have been lost (§3)
    assert restored == {"public:r": [1, 2, 3], f"user:{ann.user.pk}": ["private"]}
    await publish("public:r", 4)
    assert (await again.recv_type("message"))["offset"] == 4
    await sessions.flush()  # the row is written in the background
    rows = [row async for row in Connection.objects.filter(session_id=welcome["session"]).order_by("pk")]
    assert [row.resumed for row in rows] == [False, True]


async def test_resume_from_the_query_string(backend, login, connect):
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:q"})
    await drop(ann)
    await publish("public:q", "missed")
    access, _ = await sync_to_async(make_tokens)(ann.user)
    again = await connect(token=access, query=f"resume={ann.welcome['session']}")
    welcome = await again.recv_type("welcome")
    assert welcome["resumed"] is True and welcome["session"] == ann.welcome["session"]
    frame = await again.recv_type("subscribed")
    assert [p["data"] for p in frame["publications"]] == ["missed"]


async def test_a_session_is_held_by_one_socket_at_a_time(backend, login, connect):
    """A second resume takes the session over, and the socket that held it is closed with 4509."""
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:once"})
    await drop(ann)
    first = await connect()
    assert (await auth_frame(first, ann.user, ann.welcome["session"]))["resumed"] is True
    await first.recv_type("subscribed")
    second = await connect()
    assert (await auth_frame(second, ann.user, ann.welcome["session"]))["resumed"] is True
    assert (await second.recv_type("subscribed"))["channel"] == "public:once"
    await first.expect_disconnect(4509, "session_taken_over")
    await publish("public:once", "after")
    assert (await second.recv_type("message"))["data"] == "after"
    # the closed socket's close did not delete the session: it can be resumed again
    await drop(second)
    third = await connect()
    assert (await auth_frame(third, ann.user, ann.welcome["session"]))["resumed"] is True
    assert (await third.recv_type("subscribed"))["channel"] == "public:once"


async def test_a_live_session_can_be_resumed_as_after_a_crash(backend, login, connect):
    """The server that held the socket saves nothing (killed): its subscriptions were recorded at subscribe."""
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:crash"})
    await ann.request({"type": "subscribe", "id": 2, "channel": "public:gone"})
    await ann.request({"type": "unsubscribe", "id": 3, "channel": "public:gone"})
    await publish("public:crash", "seen")
    assert (await ann.recv_type("message"))["data"] == "seen"
    await publish("public:crash", "missed")
    # no drop: the old socket is alive as far as the server knows, as a killed process's sockets are
    again = await connect()
    assert (await auth_frame(again, ann.user, ann.welcome["session"]))["resumed"] is True
    frame = await again.recv_type("subscribed")
    # from the position recorded at subscribe (no beat ran): both, "seen" again (clients drop it by offset)
    assert frame["channel"] == "public:crash" and frame["recovered"] is True
    assert datas(frame) == ["seen", "missed"]
    assert (await ann.recv_type("message"))["data"] == "missed"  # the old socket got it live before it was told
    await ann.expect_disconnect(4509)


async def test_positions_from_the_client_start_the_replay_exactly_after_them(backend, login, connect):
    ann = await login("ann")
    subscribed = await ann.request({"type": "subscribe", "id": 1, "channel": "public:pos"})
    for n in range(3):
        await publish("public:pos", n)
    seen = [await ann.recv_type("message") for _ in range(2)]
    await drop(ann)
    other = await ann_channel_elsewhere(ann, connect)
    positions = {
        "public:pos": {"epoch": seen[-1]["epoch"], "offset": seen[-1]["offset"]},
        other["channel"]: {"epoch": other["epoch"], "offset": other["offset"]},  # not in the session: added
    }
    again = await connect()
    assert (await auth_frame(again, ann.user, ann.welcome["session"], positions))["resumed"] is True
    restored = {}
    for _ in range(2):
        frame = await again.recv_type("subscribed")
        restored[frame["channel"]] = (frame["recovered"], datas(frame))
    assert restored == {"public:pos": (True, [2]), other["channel"]: (True, ["elsewhere"])}
    assert subscribed["offset"] == 0


async def ann_channel_elsewhere(ann, connect):
    """A position on a second channel, with one publication after it."""
    position = await publish("public:other", "before")
    await publish("public:other", "elsewhere")
    return {"channel": "public:other", "epoch": position.epoch, "offset": position.offset}


async def test_positions_in_the_query_string(backend, login, connect):
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:qs"})
    first = await publish("public:qs", "had")
    await publish("public:qs", "missed")
    await drop(ann)
    access, _ = await sync_to_async(make_tokens)(ann.user)
    positions = json.dumps({"public:qs": {"epoch": first.epoch, "offset": first.offset}})
    query = urlencode({"resume": ann.welcome["session"], "positions": positions})
    again = await connect(token=access, query=query)
    assert (await again.recv_type("welcome"))["resumed"] is True
    assert datas(await again.recv_type("subscribed")) == ["missed"]


@pytest.mark.parametrize("bad", ["{not json", '{"public:bad": 3}'])
async def test_bad_positions_in_the_query_string_are_an_error_and_the_resume_goes_on(login, connect, bad):
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:bad"})
    await drop(ann)
    await publish("public:bad", "missed")
    access, _ = await sync_to_async(make_tokens)(ann.user)
    again = await connect(token=access, query=urlencode({"resume": ann.welcome["session"], "positions": bad}))
    error = await again.recv_type("error")
    assert error["code"] == "bad_request" and "positions" in error["message"]
    assert (await again.recv_type("welcome"))["resumed"] is True
    assert datas(await again.recv_type("subscribed")) == ["missed"]


@pytest.mark.parametrize(
    "positions",
    [[], {"nochannel": {"epoch": "e", "offset": 1}}, {"public:x": None}, {"public:x": {"epoch": "e", "offset": -1}}],
)
async def test_bad_positions_in_the_auth_frame_are_bad_requests(login, connect, positions):
    ann = await login("ann")
    await drop(ann)
    again = await connect()
    reply = await auth_frame(again, ann.user, ann.welcome["session"], positions)
    assert reply["type"] == "error" and reply["code"] == "bad_request" and reply["id"] == 1


async def test_positions_without_resume_are_a_bad_request(login, connect, user):
    again = await connect()
    access, _ = await sync_to_async(make_tokens)(user)
    reply = await again.request(
        {"type": "auth", "id": 1, "token": access, "positions": {"public:x": {"epoch": "e", "offset": 1}}}
    )
    assert reply["code"] == "bad_request" and "resume" in reply["message"]


@override_realtime({"MAX_SUBSCRIPTIONS": 1})
async def test_a_restore_stays_within_the_subscription_limit(login, connect):
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:one"})
    await drop(ann)
    extra = {"public:two": {"epoch": "e", "offset": 0}}
    again = await connect()
    assert (await auth_frame(again, ann.user, ann.welcome["session"], extra))["resumed"] is True
    assert (await again.recv_type("subscribed"))["channel"] == "public:one"
    assert await again.recv_type("unsubscribed") == {
        "type": "unsubscribed",
        "channel": "public:two",
        "reason": "limit_exceeded",
    }


async def test_another_user_cannot_resume_a_session(backend, login, connect, make_user):
    ann = await login("ann")
    await drop(ann)
    bob = await sync_to_async(make_user)("bob")
    welcome = await auth_frame(await connect(), bob, ann.welcome["session"])
    assert welcome["resumed"] is False and welcome["session"] != ann.welcome["session"]
    # and the attempt used it up: nobody can hijack it by guessing later
    assert (await auth_frame(await connect(), ann.user, ann.welcome["session"]))["resumed"] is False


async def test_unknown_sessions_are_not_resumed(backend, login, connect):
    ann = await login("ann")
    welcome = await auth_frame(await connect(), ann.user, "s_nonexistent")
    assert welcome["resumed"] is False and welcome["session"].startswith("s_")


@pytest.mark.parametrize("code", [1000, 4503])
async def test_no_resume_after_a_deliberate_close(backend, login, connect, code):
    ann = await login("ann")
    if code == 1000:
        await ann.communicator.disconnect(code=1000)
    else:
        from realtime.core.protocol import CloseCode
        from realtime.sessions.control import disconnect_user

        await disconnect_user(ann.user.pk, CloseCode.FORBIDDEN)
        await ann.expect_disconnect(4503)
        await ann.close()
    assert (await auth_frame(await connect(), ann.user, ann.welcome["session"]))["resumed"] is False


@override_realtime({"RESUME_WINDOW": 0})
async def test_no_resume_after_the_window(login, connect):
    ann = await login("ann")
    await drop(ann)
    assert (await auth_frame(await connect(), ann.user, ann.welcome["session"]))["resumed"] is False


async def test_a_resume_within_the_grace_causes_neither_leave_nor_join(backend, login, connect):
    bob = await login("bob")
    await bob.request({"type": "subscribe", "id": 1, "channel": "public:stay"})
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:stay"})
    joins = [(await bob.recv_type("join"))["user"]["username"] for _ in range(2)]
    assert joins == ["bob", "ann"]
    await drop(ann)
    again = await connect()
    assert (await auth_frame(again, ann.user, ann.welcome["session"]))["resumed"] is True
    await again.recv_type("subscribed")
    await presence.prune("public:stay")
    await publish("public:stay", "marker")  # the layer is FIFO: a join or leave would come first
    frames = []
    while not frames or frames[-1]["type"] != "message":
        frames.append(await bob.recv())
    assert [f["type"] for f in frames if f["type"] != "ping"] == ["message"], frames
    members = await bob.request({"type": "presence", "id": 2, "channel": "public:stay"})
    assert [(m["username"], m["connections"]) for m in members["members"]] == [("ann", 1), ("bob", 1)]


async def test_a_channel_lost_meanwhile_is_not_restored(backend, login, connect):
    ann = await login("ann")
    room = await Room.objects.acreate(slug="attic", name="Attic")
    await room.members.aadd(ann.user)
    await ann.request({"type": "subscribe", "id": 1, "channel": "room:attic"})
    await drop(ann)
    await room.members.aremove(ann.user)
    again = await connect()
    assert (await auth_frame(again, ann.user, ann.welcome["session"]))["resumed"] is True
    assert await again.recv_type("unsubscribed") == {
        "type": "unsubscribed",
        "channel": "room:attic",
        "reason": "removed",
    }


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_a_presence_failure_in_a_restore_says_unsubscribed_and_means_it(backend, login, connect):
    """The client is told the state the server holds: `unsubscribed`, and then no messages of that channel."""
    bob = await login("bob")
    await bob.request({"type": "subscribe", "id": 1, "channel": "public:rp"})
    ann = await login("ann")
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:rp"})
    await ann.request({"type": "subscribe", "id": 2, "channel": "public:other"})
    await drop(ann)
    await break_presence("public:rp")
    again = await connect()
    assert (await auth_frame(again, ann.user, ann.welcome["session"]))["resumed"] is True
    told = {}
    while len(told) < 2:
        frame = await again.recv()
        if frame["type"] not in ("ping", "join", "leave"):
            told[frame["channel"]] = frame["type"]
    assert told == {"public:rp": "unsubscribed", "public:other": "subscribed"}
    await publish("public:rp", "after the failure")
    assert (await bob.recv_type("message"))["data"] == "after the failure"  # the fan-out went past ann too
    await again.send({"type": "ping", "id": 3})
    assert await again.recv_type("pong") == {"type": "pong", "id": 3}  # no message of public:rp came first
    assert ann.welcome["session"] not in presence.local().get("public:rp", set())
