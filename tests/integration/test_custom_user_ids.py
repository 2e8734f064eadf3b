"""Any AUTH_USER_MODEL works (INTEGRATION.md section 2): a primary key that is a UUID or a string, and a
USERNAME_FIELD other than `username`, through the real middleware, consumer, engines and HTTP API.

The suite's settings fix `auth.User`, so the `keyed` fixture makes it look like such a model to the
app: `user.pk` answers a UUID (or a string key with `@`) instead of the integer `id`, and
`USERNAME_FIELD` is `email`. The `id` column stays, and simplejwt keeps naming users by it
(`USER_ID_FIELD`, which need not be the primary key), so rows, tokens and memberships are real.
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.admin import AdminSite
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from realtime.admin import MembershipInline, RoomAdmin
from realtime.http.token_views import TokenObtainSerializer
from realtime.models import Connection, Room
from realtime.publish import publish
from tests.conftest import PASSWORD, make_tokens, override_realtime
from tests.integration.test_api import PUBLISH, assert_error

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

User = get_user_model()
KIB = 1024
KEYS = {
    "uuid": lambda user_id: uuid.uuid5(uuid.NAMESPACE_URL, f"member/{user_id}"),
    # Channel-name characters (`user:<key>` works), but `@` is not a channel-layer group character.
    "text": lambda user_id: f"member.{user_id}@example.org",
}


@pytest.fixture
def by_email(monkeypatch):
    """`email` is the user model's USERNAME_FIELD (and so the login field simplejwt reads)."""
    monkeypatch.setattr(User, "USERNAME_FIELD", "email")
    monkeypatch.setattr(TokenObtainSerializer, "username_field", "email")


@pytest.fixture(params=sorted(KEYS))
def keyed(request, monkeypatch, by_email):
    """Users whose primary key is a UUID, or a string, and whose name is their email."""
    key = KEYS[request.param]
    monkeypatch.setattr(User, "pk", property(lambda user: None if user.id is None else key(user.id)))
    return request.param


def make_member(name: str, **fields):
    return User.objects.create_user(username=name, email=f"{name}@example.org", password=PASSWORD, **fields)


def entry(user, connections: int | None = None) -> dict:
    """The user as the wire should show it: the key as a string, the email as the name."""
    shown = {"id": str(user.pk), "username": user.email}
    return shown if connections is None else {**shown, "connections": connections}


async def open_as(connect, user, **kwargs):
    access, refresh = await sync_to_async(make_tokens)(user)
    socket = await connect(token=access, **kwargs)
    socket.welcome = await socket.recv_type("welcome")
    socket.access_token, socket.refresh_token = access, refresh
    return socket


async def members(*names: str) -> list:
    return [await sync_to_async(make_member)(name) for name in names]


# ---------------------------------------------------------------- the socket


async def test_welcome_presence_and_publications_show_the_key_as_a_string(backend, keyed, connect):
    ann_user, bob_user = await members("ann", "bob")
    assert not isinstance(ann_user.pk, int)  # the fixture took
    ann = await open_as(connect, ann_user)
    assert ann.welcome["user"] == entry(ann_user)
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:lobby"})
    assert (await ann.recv_type("join"))["user"] == entry(ann_user)

    bob = await open_as(connect, bob_user)
    await bob.request({"type": "subscribe", "id": 1, "channel": "public:lobby"})
    assert (await ann.recv_type("join"))["user"] == entry(bob_user)
    presence = await bob.request({"type": "presence", "id": 2, "channel": "public:lobby"})
    assert presence["members"] == [entry(ann_user, 1), entry(bob_user, 1)]

    published = await bob.request({"type": "publish", "id": 3, "channel": "public:lobby", "data": "hi"})
    message = await ann.recv_type("message")
    assert (message["offset"], message["user"]) == (published["offset"], str(bob_user.pk))
    history = await ann.request({"type": "history", "id": 4, "channel": "public:lobby"})
    assert [p["user"] for p in history["publications"]] == [str(bob_user.pk)]

    await bob.request({"type": "unsubscribe", "id": 5, "channel": "public:lobby"})
    assert (await ann.recv_type("leave"))["user"] == entry(bob_user)


async def test_a_user_channel_is_named_by_the_key(backend, keyed, connect):
    ann_user, bob_user = await members("ann", "bob")
    ann = await open_as(connect, ann_user)
    own = f"user:{ann_user.pk}"
    assert (await ann.request({"type": "subscribe", "id": 1, "channel": own}))["type"] == "subscribed"
    other = await ann.request({"type": "subscribe", "id": 2, "channel": f"user:{bob_user.pk}"})
    assert (other["type"], other["code"]) == ("error", "permission_denied")

    await publish(own, {"unread": 3})  # the server: `user` null
    await publish(own, "as ann", user=ann_user.pk)  # project code publishing as the user, by its key
    first, second = await ann.recv_type("message"), await ann.recv_type("message")
    assert [(m["channel"], m["data"], m["user"]) for m in (first, second)] == [
        (own, {"unread": 3}, None),
        (own, "as ann", str(ann_user.pk)),
    ]


async def test_logout_ends_every_socket_of_the_user(backend, keyed, connect):
    """The revocation reaches the user's control group, also one named by a digest (a key with `@`)."""
    (ann_user,) = await members("ann")
    first, second = await open_as(connect, ann_user), await open_as(connect, ann_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {first.access_token}")
    response = await sync_to_async(client.post)("/api/auth/logout/", {"refresh": first.refresh_token}, format="json")
    assert response.status_code == 204, response.content
    await first.expect_disconnect(4503, "forbidden")
    await second.expect_disconnect(4503, "forbidden")


async def test_a_session_resumes_for_its_own_user_only(backend, keyed, connect):
    ann_user, bob_user = await members("ann", "bob")
    ann = await open_as(connect, ann_user)
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:r"})
    await ann.communicator.disconnect(code=1006)  # lost: resumable
    await publish("public:r", "missed")

    access, _ = await sync_to_async(make_tokens)(ann_user)
    again = await connect(token=access, query=f"resume={ann.welcome['session']}")
    welcome = await again.recv_type("welcome")
    assert (welcome["resumed"], welcome["session"]) == (True, ann.welcome["session"])
    assert [p["data"] for p in (await again.recv_type("subscribed"))["publications"]] == ["missed"]
    await again.communicator.disconnect(code=1006)

    access, _ = await sync_to_async(make_tokens)(bob_user)
    thief = await connect(token=access, query=f"resume={ann.welcome['session']}")
    welcome = await thief.recv_type("welcome")
    assert welcome["resumed"] is False and welcome["session"] != ann.welcome["session"]


@override_realtime(MAX_CONNECTIONS_PER_USER=1)
async def test_the_connection_limit_counts_per_user(backend, keyed, connect):
    ann_user, bob_user = await members("ann", "bob")
    await open_as(connect, ann_user)
    access, _ = await sync_to_async(make_tokens)(ann_user)
    await (await connect(token=access)).expect_disconnect(4529)
    assert (await open_as(connect, bob_user)).welcome["user"] == entry(bob_user)


async def test_presence_tells_apart_integer_ids_past_the_precision_of_a_double(bare_engine):
    """Redis's Lua reads JSON numbers as doubles: 2^60 and 2^60 + 1 would be one user there."""
    ann, bob = {"id": 2**60, "username": "ann"}, {"id": 2**60 + 1, "username": "bob"}
    assert (await bare_engine.presence_add("public:big", "s1", ann, ttl=30)).joined == [ann]
    assert (await bare_engine.presence_add("public:big", "s2", bob, ttl=30)).joined == [bob]
    _, present = await bare_engine.presence_snapshot("public:big")
    assert present == [{**ann, "connections": 1}, {**bob, "connections": 1}]
    assert (await bare_engine.presence_remove("public:big", "s1")).left == [ann]


# ---------------------------------------------------------------- the HTTP API


@override_realtime(PUBLISH_BYTES_PER_SECOND=8 * KIB)
async def test_http_presence_and_the_publish_quota_know_the_user_by_its_key(engine, keyed, connect, api_login):
    """The socket and the HTTP API charge one quota: the same key, whichever side names the user."""
    root_user = await sync_to_async(make_member)("root", is_staff=True)
    socket = await open_as(connect, root_user)
    await socket.request({"type": "subscribe", "id": 1, "channel": "public:a"})
    api = await sync_to_async(api_login)(root_user)
    response = await sync_to_async(api.get)("/api/realtime/channels/public:a/presence/")
    assert response.status_code == 200 and response.json()["members"] == [entry(root_user, 1)]

    big = {"type": "publish", "id": 2, "channel": "public:a", "data": "x" * (60 * KIB)}
    assert (await socket.request(big))["type"] == "published"
    refused = await sync_to_async(api.post)(PUBLISH, {"channel": "public:a", "data": "hi"}, format="json")
    assert_error(refused, 429, "rate_limited")


@override_realtime(LOGIN_FAILURES_PER_USER=3, LOGIN_FAILURES_PER_ADDRESS=100, LOGIN_WINDOW=60)
def test_logins_by_email_are_throttled_per_email(api, by_email):
    for name in ("ann", "bob"):
        make_member(name)

    def login(email: str, password: str = PASSWORD) -> int:
        return api.post("/api/auth/token/", {"email": email, "password": password}, format="json").status_code

    assert [login("ann@example.org", "wrong") for _ in range(3)] == [401, 401, 401]
    assert login("ann@example.org") == 429  # the right password too: the guesses are what is throttled
    assert login("bob@example.org") == 200


# ---------------------------------------------------------------- the admin


def test_the_admin_searches_sessions_and_rooms_by_the_username_field(admin_client, by_email):
    ann = make_member("ann")
    now = timezone.now()
    row = Connection.objects.create(
        user=ann, session_id="s_ann", channel_name="specific.test!ann", node="host:1", opened_at=now, last_seen=now
    )
    page = admin_client.get("/admin/realtime/connection/", {"q": "ann@example.org"}).content.decode()
    assert row.session_id in page
    Room.objects.create(slug="kitchen", name="Kitchen").members.add(ann)
    Room.objects.create(slug="attic", name="Attic")
    page = admin_client.get("/admin/realtime/room/", {"q": "ann@example.org"}).content.decode()
    assert "kitchen" in page and "attic" not in page


def test_room_members_need_no_admin_for_the_user_model():
    """A project that does not register its custom user in the admin still passes `check`
    (autocomplete would be admin.E039); where the user's admin can search, members get a search box."""
    bare = AdminSite(name="bare")
    bare.register(Room, RoomAdmin)
    assert bare._registry[Room].check() == []
    request = RequestFactory().get("/")
    assert MembershipInline(Room, bare).get_autocomplete_fields(request) == ()
    assert MembershipInline(Room, admin.site).get_autocomplete_fields(request) == ("user",)
