"""Bulk changes reach open sockets: room memberships deleted in any way (through-model querysets
included) end the room's channel once, and `realtime.auth.bulk.deactivate` closes the users' sockets
and revokes their tokens as a save of each would."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from realtime.auth.bulk import deactivate
from realtime.core.users import user_key
from realtime.models import CredentialState, Room
from realtime.pubsub.switchboard import switchboard
from realtime.sessions.control import CHANNEL_END, DISCONNECT
from tests.conftest import make_tokens
from tests.integration.conftest import RECEIVE_TIMEOUT
from tests.recorder import Recorder

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

User = get_user_model()
Membership = Room.members.through
KITCHEN = "room:kitchen"


class RollBack(Exception):
    """Raised to roll a transaction back."""


async def member_of(slug: str, *users) -> Room:
    room = await Room.objects.acreate(slug=slug, name=slug.title())
    await room.members.aadd(*users)
    return room


async def subscribed_publishers(channel: str, *sockets) -> None:
    """Subscribe each socket to `channel`, then publish once from each, so each remembers its publish permission."""
    for socket in sockets:
        assert (await socket.request({"type": "subscribe", "id": 1, "channel": channel}))["type"] == "subscribed"
    for socket in sockets:
        reply = await socket.request({"type": "publish", "id": 2, "channel": channel, "data": 0})
        assert reply["type"] == "published"
        for receiver in sockets:
            await receiver.recv_type("message")


async def probe(user) -> Recorder:
    """A recorder registered under the user's key: it sees every control event sent to the user's sockets."""
    recorder = Recorder()
    board = switchboard()
    await board.join(recorder, board.address(), user_key(user.pk))
    return recorder


async def events_on(recorder: Recorder) -> list[dict]:
    """The control events that reached `recorder` so far (the senders are done: a ping sent now is heard after them)."""
    await asyncio.wait_for(switchboard().ping(), RECEIVE_TIMEOUT)
    events, recorder.events = recorder.events, []
    return events


def channel_ends(events: list[dict]) -> list[str]:
    return [event["channel"] for event in events if event["do"] == CHANNEL_END]


# ---------------------------------------------------------------- room memberships


async def test_a_bulk_delete_of_a_users_memberships_ends_the_room_channel(login):
    ann, bob = await login("ann"), await login("bob")
    await member_of("kitchen", ann.user, bob.user)
    await subscribed_publishers(KITCHEN, ann, bob)

    await Membership.objects.filter(user=ann.user).adelete()

    assert await ann.recv_type("unsubscribed") == {"type": "unsubscribed", "channel": KITCHEN, "reason": "removed"}
    denied = await ann.request({"type": "publish", "id": 3, "channel": KITCHEN, "data": 1})
    assert denied["code"] == "permission_denied"
    # bob is untouched: still subscribed and publishing, and ann no longer gets the room's messages
    assert (await bob.request({"type": "publish", "id": 3, "channel": KITCHEN, "data": 2}))["type"] == "published"
    assert (await bob.recv_type("message"))["data"] == 2
    assert await ann.request({"type": "ping", "id": 4}) == {"type": "pong", "id": 4}
    assert ann.backlog == []


async def test_a_bulk_delete_of_a_rooms_memberships_ends_it_for_every_member(login):
    ann, bob = await login("ann"), await login("bob")
    room = await member_of("kitchen", ann.user, bob.user)
    for socket in (ann, bob):
        await socket.request({"type": "subscribe", "id": 1, "channel": KITCHEN})

    await Membership.objects.filter(room=room).adelete()

    for socket in (ann, bob):
        assert (await socket.recv_type("unsubscribed"))["reason"] == "removed"
        denied = await socket.request({"type": "subscribe", "id": 2, "channel": KITCHEN})
        assert denied["code"] == "permission_denied"


def _remove(room, ann):
    room.members.remove(ann)


def _remove_reverse(room, ann):
    ann.rooms.remove(room)


def _clear(room, ann):
    room.members.clear()


def _clear_reverse(room, ann):
    ann.rooms.clear()


def _set(room, ann):
    room.members.set([])


def _delete_membership(room, ann):
    Membership.objects.get(room=room, user=ann).delete()


def _delete_memberships(room, ann):
    Membership.objects.filter(user=ann).delete()


def _delete_room(room, ann):
    room.delete()


def _delete_rooms(room, ann):
    Room.objects.filter(slug__in=[room.slug, "cellar"]).delete()


@pytest.mark.parametrize(
    "change",
    [
        _remove,
        _remove_reverse,
        _clear,
        _clear_reverse,
        _set,
        _delete_membership,
        _delete_memberships,
        _delete_room,
        _delete_rooms,
    ],
)
async def test_every_way_of_ending_a_membership_ends_the_channel_once(make_user, change):
    ann = await sync_to_async(make_user)("ann")
    kitchen = await member_of("kitchen", ann)
    await member_of("cellar")  # no members: nothing to end there
    watching = await probe(ann)

    await sync_to_async(change)(kitchen, ann)

    assert channel_ends(await events_on(watching)) == [KITCHEN]


async def test_a_rolled_back_bulk_delete_ends_nothing(make_user):
    ann = await sync_to_async(make_user)("ann")
    await member_of("kitchen", ann)
    watching = await probe(ann)

    def delete_and_roll_back():
        with pytest.raises(RollBack), transaction.atomic():
            Membership.objects.filter(user=ann).delete()
            raise RollBack

    await sync_to_async(delete_and_roll_back)()
    assert await events_on(watching) == []
    assert await Membership.objects.filter(user=ann).aexists()


async def test_deleting_a_user_disconnects_without_ending_each_room(make_user):
    """The cascade deletes the memberships too; the revocation (4503) already ends every socket of the user."""
    ann = await sync_to_async(make_user)("ann")
    await member_of("kitchen", ann)
    watching = await probe(ann)

    await User.objects.filter(pk=ann.pk).adelete()

    assert [event["do"] for event in await events_on(watching)] == [DISCONNECT]


# ---------------------------------------------------------------- bulk deactivation


def post(path: str, body: dict, access: str | None = None):
    client = APIClient()
    if access:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.post(path, body, format="json")


async def test_bulk_deactivation_closes_the_sockets_and_refuses_the_tokens(login):
    ann, bob, carol = await login("ann"), await login("bob"), await login("carol")
    pairs = {s.user.username: await sync_to_async(make_tokens)(s.user) for s in (ann, bob, carol)}

    count = await sync_to_async(deactivate)(User.objects.filter(username__in=["ann", "bob"]))

    assert count == 2
    for socket in (ann, bob):
        frame = await socket.expect_disconnect(4503, "forbidden")
        assert frame["reconnect"] is False
    for name in ("ann", "bob"):
        access, refresh = pairs[name]
        assert (await sync_to_async(post)("/api/auth/token/refresh/", {"refresh": refresh})).status_code == 401
        for token in (access, refresh):
            assert (await sync_to_async(post)("/api/auth/token/verify/", {"token": token})).status_code == 401
    states = {s.user_id: s async for s in CredentialState.objects.all()}
    assert set(states) == {ann.user.pk, bob.user.pk}
    assert all(s.revoked_at is not None and s.refresh_revoked_at is not None for s in states.values())
    assert not await User.objects.filter(username__in=["ann", "bob"], is_active=True).aexists()

    # carol was not in the queryset
    assert await carol.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
    access, refresh = pairs["carol"]
    assert (await sync_to_async(post)("/api/auth/token/refresh/", {"refresh": refresh})).status_code == 200
    assert (await sync_to_async(post)("/api/auth/token/verify/", {"token": access})).status_code == 200
    assert (await User.objects.aget(username="carol")).is_active


async def test_bulk_deactivation_revokes_a_user_already_made_inactive_by_an_update(login):
    """The bypass this helper exists for: `update(is_active=False)` left the socket open; deactivate ends it."""
    ann = await login("ann")
    await User.objects.filter(pk=ann.user.pk).aupdate(is_active=False)
    assert await ann.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}  # the bypass

    assert await sync_to_async(deactivate)(User.objects.filter(pk=ann.user.pk)) == 1
    await ann.expect_disconnect(4503, "forbidden")


def test_bulk_deactivation_queries_do_not_grow_with_the_users(make_user):
    def queries(usernames: list[str]) -> int:
        users = [make_user(name) for name in usernames]
        CredentialState.objects.create(user=users[0])  # one user revoked before, the others not
        with CaptureQueriesContext(connection) as captured:
            assert deactivate(User.objects.filter(pk__in=[u.pk for u in users])) == len(users)
        return len(captured)

    assert queries(["a1"]) == queries(["b1", "b2", "b3", "b4", "b5"])


def test_a_rolled_back_bulk_deactivation_changes_nothing(make_user):
    ann = make_user("ann")
    with pytest.raises(RollBack), transaction.atomic():
        deactivate(User.objects.filter(pk=ann.pk))
        raise RollBack
    ann.refresh_from_db()
    assert ann.is_active
    assert not CredentialState.objects.exists()


async def test_the_user_admin_action_deactivates_and_disconnects(login, admin_client):
    ann, bob = await login("ann"), await login("bob")
    response = await sync_to_async(admin_client.post)(
        "/admin/auth/user/",
        {"action": "deactivate_and_disconnect", "_selected_action": [ann.user.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Deactivated and disconnected 1 user" in response.content.decode()
    await ann.expect_disconnect(4503, "forbidden")
    assert not (await User.objects.aget(pk=ann.user.pk)).is_active
    assert await bob.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}


async def test_deleting_a_member_in_the_room_admin_ends_the_channel(make_user, admin_client):
    ann, bob = await sync_to_async(make_user)("ann"), await sync_to_async(make_user)("bob")
    room = await member_of("kitchen", ann, bob)
    rows = [m async for m in Membership.objects.filter(room=room).order_by("user__username")]
    watching = {user.username: await probe(user) for user in (ann, bob)}
    form = {"slug": "kitchen", "name": "Kitchen", "memberships-TOTAL_FORMS": 2, "memberships-INITIAL_FORMS": 2}
    for index, row in enumerate(rows):
        form |= {f"memberships-{index}-id": row.pk, f"memberships-{index}-room": room.pk}
        form |= {f"memberships-{index}-user": row.user_id}
    form["memberships-0-DELETE"] = "on"  # ann's

    response = await sync_to_async(admin_client.post)(f"/admin/realtime/room/{room.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[-2000:]
    assert channel_ends(await events_on(watching["ann"])) == [KITCHEN]
    assert await events_on(watching["bob"]) == []
    assert [m.user_id async for m in Membership.objects.filter(room=room)] == [bob.pk]
