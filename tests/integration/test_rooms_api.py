"""`GET /api/realtime/rooms/`: the rooms (channels `room:<slug>`) the user is a member of."""

from __future__ import annotations

import pytest
from django.db import DatabaseError

from realtime.models import Room

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ROOMS = "/api/realtime/rooms/"


def room(slug: str, name: str, *members) -> Room:
    created = Room.objects.create(slug=slug, name=name)
    created.members.add(*members)
    return created


def test_a_member_sees_the_room(api_login, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    room("kitchen", "Kitchen", ann, bob)
    response = api_login(ann).get(ROOMS)
    assert response.status_code == 200
    assert response.json() == {"rooms": [{"channel": "room:kitchen", "name": "Kitchen"}]}


def test_a_non_member_does_not_see_the_room(api_login, make_user):
    ann, carol = make_user("ann"), make_user("carol")
    room("kitchen", "Kitchen", ann)
    response = api_login(carol).get(ROOMS)
    assert response.status_code == 200
    assert response.json() == {"rooms": []}


def test_only_the_users_rooms_ordered_by_slug(api_login, make_user):
    ann, bob = make_user("ann"), make_user("bob")
    room("zoo", "Zoo", ann)
    room("attic", "The attic", ann, bob)
    room("garden", "Garden", bob)
    room("cellar", "Cellar")
    body = api_login(ann).get(ROOMS).json()
    assert body == {
        "rooms": [{"channel": "room:attic", "name": "The attic"}, {"channel": "room:zoo", "name": "Zoo"}],
    }


def test_leaving_a_room_removes_it(api_login, make_user):
    ann = make_user("ann")
    kitchen = room("kitchen", "Kitchen", ann)
    kitchen.members.remove(ann)
    assert api_login(ann).get(ROOMS).json() == {"rooms": []}


def test_anonymous_is_401(api):
    response = api.get(ROOMS)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthorized" and body["message"]


def test_invalid_token_is_401(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = api.get(ROOMS)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_read_only(api_login, make_user):
    response = api_login(make_user("ann")).post(ROOMS, {}, format="json")
    assert response.status_code == 405


def test_database_down_is_503_unavailable(api_login, make_user, monkeypatch):
    client = api_login(make_user("ann"))

    def broken(user):
        raise DatabaseError("the database is gone")

    monkeypatch.setattr("realtime.http.api.rooms_of", broken)
    response = client.get(ROOMS)
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"


def test_a_room_slug_with_a_trailing_newline_is_invalid():
    """The slug is the name part of `room:<slug>`: it must end where the channel pattern does."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="1-128 characters"):
        Room(slug="kitchen\n", name="Kitchen").full_clean()
    Room(slug="kitchen", name="Kitchen").full_clean()
