"""PROTOCOL section 3: session resume, on both backends."""

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from realtime import presence
from realtime.engine import reset_engines
from realtime.models import Connection, Room
from realtime.publish import publish
from tests.conftest import make_tokens

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def drop(socket):
    """The connection is lost (no close frame): code 1006, resumable."""
    await socket.communicator.disconnect(code=1006)


async def auth_frame(socket, user, resume):
    access, _ = await sync_to_async(make_tokens)(user)
    return await socket.request({"type": "auth", "token": access, "id": 1, "resume": resume})


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
    assert restored == {"public:r": [2, 3], f"user:{ann.user.pk}": ["private"]}
    await publish("public:r", 4)
    assert (await again.recv_type("message"))["offset"] == 4
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


async def test_a_session_resumes_once(backend, login, connect):
    ann = await login("ann")
    await drop(ann)
    first = await auth_frame(await connect(), ann.user, ann.welcome["session"])
    second = await auth_frame(await connect(), ann.user, ann.welcome["session"])
    assert first["resumed"] is True
    assert second["resumed"] is False and second["session"] != ann.welcome["session"]


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
        from realtime.control import disconnect_user
        from realtime.protocol import CloseCode

        await disconnect_user(ann.user.pk, CloseCode.FORBIDDEN)
        await ann.expect_disconnect(4503)
        await ann.close()
    assert (await auth_frame(await connect(), ann.user, ann.welcome["session"]))["resumed"] is False


@override_settings(REALTIME={"RESUME_WINDOW": 0})
async def test_no_resume_after_the_window(login, connect):
    reset_engines()
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
