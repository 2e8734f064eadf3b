"""INTEGRATION.md section 6: `realtime.observers`, model changes published on commit.

Real commits (transactional database) and the real engine, in memory and on Redis: each test
reads the channel's history after the commit and asserts exactly what was published.
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from realtime.engine import get_engine
from realtime.models import Membership, Room
from realtime.namespaces import resolve
from realtime.observers import observe, publish_change, unobserve
from tests.conftest import override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOMS = "public:rooms"


class RollBack(Exception):
    """Raised to roll a transaction or a savepoint back."""


@pytest.fixture
def observing():
    """`observing(model, channel=...)`: `observe` for this test only; each model it observed is unobserved after."""
    observed = set()

    def start(model, **options):
        observed.add(model)
        return observe(model, **options)

    yield start
    for model in observed:
        unobserve(model)


@pytest.fixture
def rooms(observing):
    """Rooms observed with the defaults, on `public:rooms`."""
    observing(Room, channel=lambda room: ROOMS)


def history(channel: str = ROOMS) -> list[dict]:
    """Every publication the channel's history holds, oldest first."""
    namespace, _ = resolve(channel)

    async def read():
        return await get_engine().latest(channel, namespace.history_size, ttl=namespace.history_ttl)

    return [json.loads(text) for text in async_to_sync(read)().publications]


def published(channel: str = ROOMS) -> list[dict]:
    """The data of every publication on the channel, oldest first."""
    return [publication["data"] for publication in history(channel)]


def iso(moment: datetime) -> str:
    """A datetime as DjangoJSONEncoder writes it: ISO 8601 to the millisecond, UTC as `Z`."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def room_data(room: Room) -> dict:
    return {"id": room.pk, "slug": room.slug, "name": room.name, "created_at": iso(room.created_at)}


def change(event: str, room: Room, pk: int | None = None) -> dict:
    """The payload a room's change publishes (`pk` for a deleted room, whose own pk Django cleared)."""
    data = room_data(room) | ({"id": pk} if pk is not None else {})
    return {"event": event, "model": "realtime.room", "pk": data["id"], "data": data}


def deleted(room: Room) -> tuple[Room, int]:
    """Delete the room; return it as it was, with its pk."""
    pk = room.pk
    room.delete()
    return room, pk


def rename(room: Room, name: str) -> Room:
    room.name = name
    room.save()
    return room


# ---------------------------------------------------------------- one change per transaction


def test_created_updated_and_deleted_are_each_published_after_their_commit(engine, rooms):
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        assert published() == []  # not before the commit
    assert published() == [change("created", room)]

    with transaction.atomic():
        rename(room, "Big kitchen")
    assert published()[1:] == [change("updated", room)]

    with transaction.atomic():
        room, pk = deleted(room)
    assert published()[2:] == [change("deleted", room, pk)]  # the room as it was
    assert published()[2]["data"]["name"] == "Big kitchen"
    assert [publication["user"] for publication in history()] == [None] * 3  # the server published


def test_without_a_transaction_each_save_publishes_at_once(engine, rooms):
    room = Room.objects.create(slug="kitchen", name="Kitchen")
    assert published() == [change("created", room)]
    rename(room, "Big kitchen")
    assert published() == [
        change("created", room) | {"data": room_data(room) | {"name": "Kitchen"}},
        change("updated", room),
    ]


def test_the_data_is_a_snapshot_taken_at_the_save(engine, rooms):
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        room.name = "Never saved"
    assert published()[0]["data"]["name"] == "Kitchen"


def test_foreign_keys_are_published_as_ids(engine, observing, make_user):
    observing(Membership, channel=lambda membership: f"public:room-{membership.room_id}")
    room, ann = Room.objects.create(slug="kitchen", name="Kitchen"), make_user("ann")
    membership = Membership.objects.create(room=room, user=ann)
    assert published(f"public:room-{room.pk}") == [
        {
            "event": "created",
            "model": "realtime.membership",
            "pk": membership.pk,
            "data": {"id": membership.pk, "room": room.pk, "user": ann.pk},
        }
    ]


def test_a_primary_key_of_another_name_and_type(engine, observing):
    observing(Session, channel=lambda session: "public:sessions")
    expires = timezone.now() + timedelta(days=1)
    Session.objects.create(session_key="k" * 32, session_data="{}", expire_date=expires)
    Session.objects.filter(pk="k" * 32).delete()  # a queryset delete sends post_delete for an observed model
    data = {"session_key": "k" * 32, "session_data": "{}", "expire_date": iso(expires)}
    assert published("public:sessions") == [
        {"event": "created", "model": "sessions.session", "pk": "k" * 32, "data": data},
        {"event": "deleted", "model": "sessions.session", "pk": "k" * 32, "data": data},
    ]


# ---------------------------------------------------------------- rollbacks and savepoints


def test_a_transaction_that_rolls_back_publishes_nothing(engine, rooms):
    room = Room.objects.create(slug="kitchen", name="Kitchen")
    with pytest.raises(RollBack), transaction.atomic():
        rename(room, "Big kitchen")
        Room.objects.create(slug="hall", name="Hall")
        Room.objects.get(slug="kitchen").delete()
        raise RollBack
    room.refresh_from_db()
    assert published() == [change("created", room)]  # the autocommitted create alone


def test_a_rolled_back_savepoint_drops_only_its_own_changes(engine, rooms):
    with transaction.atomic():
        kitchen = Room.objects.create(slug="kitchen", name="Kitchen")
        with pytest.raises(RollBack), transaction.atomic():
            Room.objects.create(slug="hall", name="Hall")
            raise RollBack
        hall = Room.objects.create(slug="hall", name="Hall")
    assert published() == [change("created", kitchen), change("created", hall)]


def test_a_rolled_back_savepoint_leaves_the_earlier_change_of_the_same_room(engine, rooms):
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        with pytest.raises(RollBack), transaction.atomic():
            rename(room, "Rolled back")
            raise RollBack
    assert published() == [change("created", room) | {"data": room_data(room) | {"name": "Kitchen"}}]


def test_the_changes_of_a_released_savepoint_fold_into_the_transaction(engine, rooms):
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        with transaction.atomic():
            rename(room, "Inner")
            with pytest.raises(RollBack), transaction.atomic():
                rename(room, "Innermost, rolled back")
                raise RollBack
    assert published() == [change("created", room) | {"data": room_data(room) | {"name": "Inner"}}]


def test_a_change_after_a_savepoint_that_took_every_earlier_change_back(engine, rooms):
    with transaction.atomic():
        with pytest.raises(RollBack), transaction.atomic():
            Room.objects.create(slug="hall", name="Hall")
            raise RollBack
        with transaction.atomic():
            room = Room.objects.create(slug="kitchen", name="Kitchen")
        rename(room, "Big kitchen")
    assert published() == [change("created", room)]


def test_a_savepoint_rolled_back_after_the_first_change_was_made_in_a_released_one(engine, rooms):
    with transaction.atomic():
        with transaction.atomic():
            room = Room.objects.create(slug="kitchen", name="Kitchen")
        with pytest.raises(RollBack), transaction.atomic():
            rename(room, "Rolled back")
            raise RollBack
    assert published() == [change("created", room) | {"data": room_data(room) | {"name": "Kitchen"}}]


def test_a_savepoint_rolled_back_after_others_hooks_were_registered(engine, rooms):
    """Callbacks the project registers meanwhile run, and the room is still published once, after commit."""
    ran = []
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        transaction.on_commit(lambda: ran.append("before"))
        with pytest.raises(RollBack), transaction.atomic():
            rename(room, "Rolled back")
            transaction.on_commit(lambda: ran.append("rolled back"))
            raise RollBack
        transaction.on_commit(lambda: ran.append("after"))
    assert ran == ["before", "after"]
    assert published() == [change("created", room) | {"data": room_data(room) | {"name": "Kitchen"}}]


# ---------------------------------------------------------------- one publication per transaction and room


def test_created_then_updated_is_one_created_with_the_latest_data(engine, rooms):
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        rename(room, "Big kitchen")
        rename(room, "Bigger kitchen")
    assert published() == [change("created", room)]
    assert published()[0]["data"]["name"] == "Bigger kitchen"


def test_updated_twice_is_one_updated_and_then_deleted_one_deleted(engine, rooms):
    room = Room.objects.create(slug="kitchen", name="Kitchen")
    with transaction.atomic():
        rename(room, "Big kitchen")
        rename(room, "Bigger kitchen")
    assert published()[1:] == [change("updated", room)]

    with transaction.atomic():
        rename(room, "Biggest kitchen")
        rename(room, "Last kitchen")
        room, pk = deleted(room)
    assert published()[2:] == [change("deleted", room, pk)]
    assert published()[2]["data"]["name"] == "Last kitchen"


def test_created_then_deleted_publishes_nothing(engine, rooms):
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        rename(room, "Big kitchen")
        room.delete()
        hall = Room.objects.create(slug="hall", name="Hall")
    assert published() == [change("created", hall)]


def test_deleted_then_made_again_with_its_pk_is_updated(engine, rooms):
    room = Room.objects.create(slug="kitchen", name="Kitchen")
    with transaction.atomic():
        pk = room.pk
        room.delete()
        again = Room.objects.create(pk=pk, slug="kitchen", name="New kitchen")
    assert published()[1:] == [change("updated", again)]


def test_each_room_of_a_transaction_is_published_once(engine, rooms):
    with transaction.atomic():
        kitchen = Room.objects.create(slug="kitchen", name="Kitchen")
        hall = Room.objects.create(slug="hall", name="Hall")
        rename(kitchen, "Big kitchen")
    assert published() == [change("created", kitchen), change("created", hall)]


# ---------------------------------------------------------------- observe() options


def test_events_filter_what_is_published(engine, observing):
    observing(Room, channel=lambda room: ROOMS, events=("created", "deleted"))
    room = Room.objects.create(slug="kitchen", name="Kitchen")
    rename(room, "Big kitchen")
    room.delete()
    assert [data["event"] for data in published()] == ["created", "deleted"]


def test_the_filter_applies_after_the_fold(engine, observing):
    observing(Room, channel=lambda room: ROOMS, events=("created",))
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        rename(room, "Big kitchen")  # an update, filtered out alone, is part of the created room
    assert published() == [change("created", room)]


def test_unknown_events_are_refused():
    with pytest.raises(ValueError, match="moved"):
        observe(Room, channel=lambda room: ROOMS, events=("created", "moved"))


def test_data_overrides_the_fields(engine, observing):
    observing(Room, channel=lambda room: ROOMS, data=lambda room, event: {"title": room.name.upper(), "why": event})
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
    _, pk = deleted(room)
    assert published() == [
        {"event": "created", "model": "realtime.room", "pk": pk, "data": {"title": "KITCHEN", "why": "created"}},
        {"event": "deleted", "model": "realtime.room", "pk": pk, "data": {"title": "KITCHEN", "why": "deleted"}},
    ]


def test_a_channel_of_none_publishes_nothing_for_that_instance(engine, observing):
    observing(Room, channel=lambda room: None if room.slug.startswith("secret") else ROOMS)
    with transaction.atomic():
        Room.objects.create(slug="secret-den", name="Den")
        hall = Room.objects.create(slug="hall", name="Hall")
    assert published() == [change("created", hall)]


def test_the_channel_of_each_instance(engine, observing):
    observing(Room, channel=lambda room: f"public:room-{room.slug}")
    kitchen = Room.objects.create(slug="kitchen", name="Kitchen")
    hall = Room.objects.create(slug="hall", name="Hall")
    assert published("public:room-kitchen") == [change("created", kitchen)]
    assert published("public:room-hall") == [change("created", hall)]


def test_observing_again_with_the_same_channel_publishes_once(engine, observing):
    def to_rooms(room):
        return ROOMS

    observing(Room, channel=to_rooms)
    observing(Room, channel=to_rooms, data=lambda room, event: room.slug)
    room = Room.objects.create(slug="kitchen", name="Kitchen")
    assert published() == [{"event": "created", "model": "realtime.room", "pk": room.pk, "data": "kitchen"}]


def test_two_observers_of_a_model_each_publish(engine, observing):
    observing(Room, channel=lambda room: ROOMS)
    observing(Room, channel=lambda room: "public:audit", data=lambda room, event: room.slug)
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
        rename(room, "Big kitchen")
    assert published() == [change("created", room)]
    assert published("public:audit") == [
        {"event": "created", "model": "realtime.room", "pk": room.pk, "data": "kitchen"}
    ]


def test_unobserve_stops_publishing(engine, observing):
    observing(Room, channel=lambda room: ROOMS)
    unobserve(Room)
    Room.objects.create(slug="kitchen", name="Kitchen")
    assert published() == []


# ---------------------------------------------------------------- changes that send no signals


def test_update_sends_no_signal_and_publish_change_publishes_it(engine, rooms):
    room = Room.objects.create(slug="kitchen", name="Kitchen")
    with transaction.atomic():
        Room.objects.filter(pk=room.pk).update(name="Big kitchen")
    assert published()[1:] == []

    with transaction.atomic():
        Room.objects.filter(pk=room.pk).update(name="Bigger kitchen")
        for each in Room.objects.filter(pk=room.pk):
            publish_change(each, "updated")
        assert published()[1:] == []  # on commit, like a save
    room.refresh_from_db()
    assert published()[1:] == [change("updated", room)]


def test_publish_change_for_bulk_create_folds_with_saves_and_rolls_back(engine, rooms):
    with transaction.atomic():
        made = Room.objects.bulk_create([Room(slug="kitchen", name="Kitchen"), Room(slug="hall", name="Hall")])
        for room in made:
            publish_change(room, "created")
        rename(made[0], "Big kitchen")
    assert published() == [change("created", made[0]), change("created", made[1])]

    with pytest.raises(RollBack), transaction.atomic():
        publish_change(made[0], "deleted")
        raise RollBack
    assert len(published()) == 2


def test_publish_change_to_a_channel_of_its_own(engine):
    room = Room.objects.create(slug="kitchen", name="Kitchen")  # Room is not observed here
    with pytest.raises(ValueError, match="not observed"):
        publish_change(room, "updated")
    with transaction.atomic():
        publish_change(room, "updated", channel="public:mine")
        publish_change(room, "updated", channel="public:mine")
    assert published("public:mine") == [change("updated", room)]
    with pytest.raises(ValueError, match="Unknown event"):
        publish_change(room, "renamed", channel="public:mine")


# ---------------------------------------------------------------- failures never reach the committing code


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def observer_errors(caplog) -> list[logging.LogRecord]:
    return [
        record for record in caplog.records if record.name == "realtime.observers" and record.levelno == logging.ERROR
    ]


def test_a_failed_publication_is_logged_and_the_commit_stands(engine, rooms, caplog):
    with override_realtime(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0"):
        with transaction.atomic():
            room = Room.objects.create(slug="kitchen", name="Kitchen")
    assert Room.objects.filter(pk=room.pk, name="Kitchen").exists()
    [error] = observer_errors(caplog)
    assert error.getMessage() == f"could not publish created of realtime.room pk={room.pk} to {ROOMS}"
    assert error.exc_info is not None

    rename(room, "Big kitchen")  # the engine answers again: so does publishing
    assert published() == [change("updated", room)]


def test_one_failed_publication_does_not_stop_the_others(engine, observing, caplog):
    observing(Room, channel=lambda room: "nowhere:rooms" if room.slug == "lost" else ROOMS)
    with transaction.atomic():
        Room.objects.create(slug="lost", name="Lost")
        hall = Room.objects.create(slug="hall", name="Hall")
    assert published() == [change("created", hall)]
    [error] = observer_errors(caplog)
    assert "to nowhere:rooms" in error.getMessage()


def test_an_observer_that_raises_is_logged_and_the_save_stands(engine, observing, caplog):
    observing(Room, channel=lambda room: ROOMS)
    observing(Room, channel=lambda room: "public:broken", data=lambda room, event: 1 / 0)
    with transaction.atomic():
        room = Room.objects.create(slug="kitchen", name="Kitchen")
    assert Room.objects.filter(pk=room.pk).exists()
    assert published() == [change("created", room)]
    assert published("public:broken") == []
    [error] = observer_errors(caplog)
    assert error.exc_info[0] is ZeroDivisionError


# ---------------------------------------------------------------- recovery over a socket


async def test_a_client_that_was_away_recovers_the_changes_by_offset(backend, login, rooms):
    ann = await login()
    assert (await ann.request({"type": "subscribe", "id": 1, "channel": ROOMS}))["type"] == "subscribed"
    room = await sync_to_async(Room.objects.create)(slug="kitchen", name="Kitchen")
    live = await ann.recv_type("message")
    assert live["data"] == change("created", room)
    await ann.close()

    await sync_to_async(rename)(room, "Big kitchen")
    updated = change("updated", room)
    room, pk = await sync_to_async(deleted)(room)

    again = await login()
    reply = await again.request(
        {"type": "subscribe", "id": 1, "channel": ROOMS, "recover": {"epoch": live["epoch"], "offset": live["offset"]}}
    )
    assert reply["recovered"] is True
    assert [publication["data"] for publication in reply["publications"]] == [updated, change("deleted", room, pk)]


def test_user_model_changes_can_be_observed(engine, observing, make_user):
    """Any model works, the project's user model too (its password hash kept out by `data`)."""
    observing(
        get_user_model(), channel=lambda user: f"user:{user.pk}", data=lambda user, event: {"name": user.username}
    )
    ann = make_user("ann")
    assert published(f"user:{ann.pk}") == [
        {"event": "created", "model": get_user_model()._meta.label_lower, "pk": ann.pk, "data": {"name": "ann"}}
    ]
