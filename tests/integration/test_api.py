"""The real-time HTTP API (PROTOCOL section 9): publish, history, presence, on both engines."""

from __future__ import annotations

import json
import logging
import socket
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import override_settings

from realtime.core import errors as exceptions
from realtime.core import protocol
from realtime.http.api import to_api_error
from realtime.models import Room
from realtime.pubsub import presence
from tests.conftest import make_tokens, override_realtime
from tests.integration.conftest import engine_backend

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

PUBLISH = "/api/realtime/publish/"


def history_url(channel: str) -> str:
    return f"/api/realtime/channels/{channel}/history/"


def presence_url(channel: str) -> str:
    return f"/api/realtime/channels/{channel}/presence/"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def staff(make_user):
    return make_user("root", is_staff=True)


def publish(api, channel, data, **kwargs):
    return api.post(PUBLISH, {"channel": channel, "data": data}, format="json", **kwargs)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# ---------------------------------------------------------------- publish


def test_staff_publishes_as_the_server(engine, api_login, staff):
    response = publish(api_login(staff), "public:lobby", {"text": "hi"})
    assert response.status_code == 201
    body = response.json()
    assert body == {"channel": "public:lobby", "epoch": body["epoch"], "offset": 1}
    assert isinstance(body["epoch"], str) and body["epoch"]
    history = api_login(staff).get(history_url("public:lobby")).json()
    [pub] = history["publications"]
    assert pub["data"] == {"text": "hi"} and pub["user"] is None
    assert (pub["epoch"], pub["offset"]) == (body["epoch"], 1)


def test_user_with_the_publish_permission_may_publish(engine, api_login, make_user):
    publisher = make_user("pub")
    publisher.user_permissions.add(Permission.objects.get(content_type__app_label="realtime", codename="publish"))
    response = publish(api_login(publisher), "room:kitchen", [1, 2])
    assert response.status_code == 201
    assert response.json()["offset"] == 1


def test_staff_may_publish_where_sockets_may_not(api_login, staff, user):
    # `user:<id>` has the publish rule `nobody`: it binds sockets, not the server.
    assert publish(api_login(staff), f"user:{user.pk}", {"unread": 3}).status_code == 201
    [pub] = api_login(user).get(history_url(f"user:{user.pk}")).json()["publications"]
    assert (pub["data"], pub["user"]) == ({"unread": 3}, None)


def test_superuser_may_publish(api_login, make_user):
    response = publish(api_login(make_user("boss", is_superuser=True)), "public:lobby", 1)
    assert response.status_code == 201


def test_session_authenticated_staff_may_publish(client, staff):
    client.force_login(staff)
    response = client.post(PUBLISH, {"channel": "public:lobby", "data": 1}, content_type="application/json")
    assert response.status_code == 201


def test_plain_user_is_403(api_login, user):
    assert_error(publish(api_login(user), "public:lobby", 1), 403, "permission_denied")


def test_unauthenticated_is_401(api):
    assert_error(publish(api, "public:lobby", 1), 401, "unauthorized")


def test_invalid_token_is_401(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer nonsense")
    assert_error(publish(api, "public:lobby", 1), 401, "unauthorized")


def test_get_is_405(api_login, staff):
    assert_error(api_login(staff).get(PUBLISH), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "body",
    [
        '{"data": 1}',
        '{"channel": "public:lobby"}',
        '{"channel": "lobby", "data": 1}',
        '{"channel": "public:", "data": 1}',
        '{"channel": "Public:lobby", "data": 1}',
        '{"channel": "public:lob by", "data": 1}',
        '{"channel": "public:a/b", "data": 1}',
        '{"channel": "public:' + "x" * 129 + '", "data": 1}',
        '{"channel": 5, "data": 1}',
        '{"channel": null, "data": 1}',
        '[{"channel": "public:lobby", "data": 1}]',
        '"public:lobby"',
        "{not json",
        "",
        '{"channel": "public:lobby", "data": NaN}',
        '{"channel": "public:lobby", "data": Infinity}',
        '{"channel": "public:lobby", "data": 1e400}',
        '{"channel": "public:lobby", "data": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
    ids=[
        "no-channel",
        "no-data",
        "no-namespace",
        "empty-name",
        "uppercase-namespace",
        "space",
        "slash",
        "name-too-long",
        "channel-number",
        "channel-null",
        "list-body",
        "string-body",
        "not-json",
        "empty-body",
        "nan",
        "infinity",
        "overflowing-number",
        "nested-too-deep",
    ],
)
def test_malformed_body_is_400(engine, api_login, staff, body):
    response = api_login(staff).post(PUBLISH, body, content_type="application/json")
    assert_error(response, 400, "bad_request")


def test_form_body_is_415_bad_request(api_login, staff):
    response = api_login(staff).post(PUBLISH, {"channel": "public:lobby", "data": "1"})
    assert_error(response, 415, "bad_request")


def test_unknown_namespace_is_404(api_login, staff):
    body = assert_error(publish(api_login(staff), "nope:lobby", 1), 404, "unknown_namespace")
    assert "nope" in body["message"]


@pytest.mark.parametrize("data", [None, 0, 1.5, -2e-300, "text", [], {"nested": {"deep": [1, "é"]}}, True])
def test_any_json_value_is_data(engine, api_login, staff, data):
    assert publish(api_login(staff), "public:values", data).status_code == 201
    [pub] = api_login(staff).get(history_url("public:values")).json()["publications"]
    assert pub["data"] == data


@override_realtime({"MAX_FRAME_BYTES": 64})
def test_data_over_max_frame_bytes_is_413(engine, api_login, staff):
    api = api_login(staff)
    assert_error(publish(api, "public:lobby", "x" * 65), 413, "too_large")
    assert publish(api, "public:lobby", "x" * 62).status_code == 201  # 64 bytes with its quotes
    assert [p["offset"] for p in api.get(history_url("public:lobby")).json()["publications"]] == [1]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
@pytest.mark.parametrize("path", [PUBLISH, "/api/auth/token/"])
def test_a_body_over_the_upload_limit_is_413_not_a_traceback(engine, api_login, staff, path, caplog):
    with caplog.at_level(logging.ERROR):
        response = api_login(staff).post(path, {"channel": "public:big", "data": "x" * 2000}, format="json")
    body = assert_error(response, 413, "too_large")
    assert "1000 bytes" in body["message"]
    assert "Traceback" not in caplog.text and "Unhandled" not in caplog.text


def test_offsets_grow_by_one_per_publication(engine, api_login, staff):
    api = api_login(staff)
    replies = [publish(api, "public:count", n).json() for n in range(5)]
    assert [r["offset"] for r in replies] == [1, 2, 3, 4, 5]
    assert len({r["epoch"] for r in replies}) == 1
    assert publish(api, "public:other", 0).json()["offset"] == 1  # per channel


@pytest.mark.parametrize("view", ["publish", "history", "presence"])
def test_unreachable_redis_is_503(api_login, staff, redis_prefix, view):
    api = api_login(staff)
    with override_realtime(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", REDIS_PREFIX=redis_prefix):
        if view == "publish":
            response = publish(api, "public:lobby", 1)
        else:
            response = api.get((history_url if view == "history" else presence_url)("public:lobby"))
    assert_error(response, 503, "unavailable")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (exceptions.BadRequest(), 400),
        (exceptions.TooLarge(), 413),
        (exceptions.Unauthorized(), 401),
        (exceptions.Forbidden(), 403),
        (exceptions.PermissionDenied(), 403),
        (exceptions.UnknownNamespace(), 404),
        (exceptions.RateLimited(), 429),
        (exceptions.Unavailable(), 503),
    ],
)
def test_realtime_errors_become_http_errors(error, status):
    api_error = to_api_error(error)
    assert (api_error.status_code, api_error.default_code, str(api_error.detail)) == (
        status,
        str(error.code),
        error.message,
    )


@pytest.mark.parametrize("error", [exceptions.LimitExceeded(), exceptions.NotSubscribed(), exceptions.RealtimeError()])
def test_socket_only_errors_stay_server_faults(error):
    assert to_api_error(error) is error  # the exception handler makes it 500 `internal`


# ---------------------------------------------------------------- history


def fill(api, channel: str, count: int) -> str:
    """Publish 1..count to `channel`; return the epoch."""
    epochs = {publish(api, channel, {"n": n}).json()["epoch"] for n in range(1, count + 1)}
    assert len(epochs) == 1
    return epochs.pop()


def test_history_is_the_history_reply_oldest_first(engine, api_login, staff):
    api = api_login(staff)
    epoch = fill(api, "public:h", 3)
    response = api.get(history_url("public:h"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"type", "channel", "epoch", "offset", "publications"}  # no `id`
    assert (body["type"], body["channel"], body["epoch"], body["offset"]) == ("history", "public:h", epoch, 3)
    for n, pub in enumerate(body["publications"], start=1):
        assert set(pub) == {"channel", "epoch", "offset", "data", "user", "ts"}
        assert (pub["channel"], pub["epoch"], pub["offset"], pub["data"], pub["user"]) == (
            "public:h",
            epoch,
            n,
            {"n": n},
            None,
        )
        assert isinstance(pub["ts"], int)
    assert len(body["publications"]) == 3


def test_history_of_a_channel_never_published_to(engine, api_login, user):
    body = api_login(user).get(history_url("public:empty")).json()
    assert body["offset"] == 0 and body["publications"] == [] and body["epoch"]


def test_history_limit_without_since_is_the_newest(engine, api_login, staff):
    api = api_login(staff)
    fill(api, "public:h", 5)
    body = api.get(history_url("public:h"), {"limit": 2}).json()
    assert [p["offset"] for p in body["publications"]] == [4, 5]
    assert body["offset"] == 5


def test_history_pages_with_since_and_limit(engine, api_login, staff):
    api = api_login(staff)
    epoch = fill(api, "public:h", 5)
    seen, offset = [], 0
    while True:
        query = {"since_epoch": epoch, "since_offset": offset, "limit": 2}
        page = api.get(history_url("public:h"), query).json()["publications"]
        if not page:
            break
        assert len(page) <= 2
        seen += [p["offset"] for p in page]
        offset = page[-1]["offset"]
    assert seen == [1, 2, 3, 4, 5]


def test_history_since_without_limit_is_everything_after(engine, api_login, staff):
    api = api_login(staff)
    epoch = fill(api, "public:h", 4)
    body = api.get(history_url("public:h"), {"since_epoch": epoch, "since_offset": 1}).json()
    assert [p["offset"] for p in body["publications"]] == [2, 3, 4]


def test_history_since_another_epoch_is_empty(engine, api_login, staff):
    api = api_login(staff)
    epoch = fill(api, "public:h", 3)
    body = api.get(history_url("public:h"), {"since_epoch": "other" + epoch, "since_offset": 1}).json()
    assert (body["epoch"], body["offset"], body["publications"]) == (epoch, 3, [])


def test_history_since_past_the_newest_offset_is_empty(engine, api_login, staff):
    api = api_login(staff)
    epoch = fill(api, "public:h", 2)
    body = api.get(history_url("public:h"), {"since_epoch": epoch, "since_offset": 99}).json()
    assert (body["offset"], body["publications"]) == (2, [])


def test_history_blank_parameters_count_as_absent(api_login, staff):
    api = api_login(staff)
    fill(api, "public:h", 2)
    response = api.get(history_url("public:h") + "?since_epoch=&since_offset=&limit=")
    assert [p["offset"] for p in response.json()["publications"]] == [1, 2]


@pytest.mark.parametrize(
    "query",
    [
        {"since_epoch": "abc"},
        {"since_offset": "1"},
        {"since_epoch": "abc", "since_offset": "-1"},
        {"since_epoch": "abc", "since_offset": "x"},
        {"since_epoch": "abc", "since_offset": "1.5"},
        {"since_epoch": "abc", "since_offset": " 1"},
        {"since_epoch": "abc", "since_offset": "+1"},
        {"since_epoch": "abc", "since_offset": "1_0"},
        {"since_epoch": "abc", "since_offset": "١"},
        {"limit": "0"},
        {"limit": str(protocol.MAX_HISTORY_LIMIT + 1)},
        {"limit": "-1"},
        {"limit": "ten"},
    ],
)
def test_history_malformed_query_is_400(api_login, user, query):
    assert_error(api_login(user).get(history_url("public:h"), query), 400, "bad_request")


@pytest.mark.parametrize("limit", [1, protocol.MAX_HISTORY_LIMIT])
def test_history_limit_bounds_are_accepted(api_login, user, limit):
    assert api_login(user).get(history_url("public:h"), {"limit": limit}).status_code == 200


@pytest.mark.parametrize("channel", ["lobby", "public:", "public:a b", "public:a/b", "PUBLIC:a", "public:" + "x" * 129])
def test_history_of_a_malformed_channel_is_400(api_login, user, channel):
    assert_error(api_login(user).get(history_url(channel)), 400, "bad_request")


def test_a_channel_name_with_a_trailing_newline_is_refused(engine, api_login, staff):
    """`$` in a pattern matches before a final newline: the name must end where the pattern does."""
    api, channel = api_login(staff), "public:lobby\n"
    assert_error(publish(api, channel, 1), 400, "bad_request")
    for url in (history_url(quote(channel)), presence_url(quote(channel))):
        assert api.get(url).status_code in (400, 404)  # (a raw newline cannot be in a URL path)
    assert api.get(history_url("public:lobby")).json()["publications"] == []  # nothing was published


def test_history_of_an_unknown_namespace_is_404(api_login, user):
    assert_error(api_login(user).get(history_url("nope:x")), 404, "unknown_namespace")


def test_history_unauthenticated_is_401(api):
    assert_error(api.get(history_url("public:h")), 401, "unauthorized")


def test_channel_names_with_every_allowed_character(engine, api_login, staff):
    api = api_login(staff)
    channel = "public:A-z_0.9@x=y"
    assert publish(api, channel, 1).status_code == 201
    assert api.get(history_url(channel)).json()["publications"][0]["channel"] == channel
    assert api.get(history_url("public%3AA-z_0.9%40x%3Dy")).json()["channel"] == channel  # percent-encoded


# ---------------------------------------------------------------- who may read


@pytest.fixture
def kitchen(make_user):
    """The room `kitchen` with one member, `member`."""
    room = Room.objects.create(slug="kitchen", name="Kitchen")
    room.members.add(make_user("member"))
    return room


@pytest.mark.parametrize("kind", ["history", "presence"])
def test_public_is_readable_by_any_authenticated_user(api_login, user, kind):
    url = (history_url if kind == "history" else presence_url)("public:lobby")
    assert api_login(user).get(url).status_code == 200


@pytest.mark.parametrize("kind", ["history", "presence"])
def test_room_is_readable_by_members_only(api_login, user, kitchen, kind):
    url = (history_url if kind == "history" else presence_url)("room:kitchen")
    assert api_login(kitchen.members.get()).get(url).status_code == 200
    assert_error(api_login(user).get(url), 403, "permission_denied")
    assert_error(api_login(user).get(url.replace("kitchen", "nowhere")), 403, "permission_denied")


def test_staff_is_no_room_member(api_login, staff, kitchen):
    # Publishing over HTTP is a staff power; reading a room is not.
    assert_error(api_login(staff).get(history_url("room:kitchen")), 403, "permission_denied")


def test_user_channel_history_is_readable_by_its_user_only(api_login, user, make_user):
    other = make_user("bob")
    assert api_login(user).get(history_url(f"user:{user.pk}")).status_code == 200
    assert_error(api_login(other).get(history_url(f"user:{user.pk}")), 403, "permission_denied")


def test_user_channel_has_no_presence(api_login, user):
    body = assert_error(api_login(user).get(presence_url(f"user:{user.pk}")), 403, "permission_denied")
    assert "presence" in body["message"]


def test_presence_unauthenticated_is_401(api):
    assert_error(api.get(presence_url("public:lobby")), 401, "unauthorized")


def test_presence_of_a_bad_channel(api_login, user):
    assert_error(api_login(user).get(presence_url("public:a b")), 400, "bad_request")
    assert_error(api_login(user).get(presence_url("nope:x")), 404, "unknown_namespace")


# ---------------------------------------------------------------- presence


def test_presence_lists_one_entry_per_user(engine, api_login, user, make_user):
    bob = make_user("bob")
    ann_info, bob_info = {"id": user.pk, "username": "ann"}, {"id": bob.pk, "username": "bob"}
    async_to_sync(presence.add)("public:lobby", "s_ann1", ann_info)
    async_to_sync(presence.add)("public:lobby", "s_ann2", ann_info)
    async_to_sync(presence.add)("public:lobby", "s_bob1", bob_info)
    try:
        response = api_login(user).get(presence_url("public:lobby"))
        assert response.status_code == 200
        body = response.json()
        assert (body["type"], body["channel"]) == ("presence", "public:lobby")
        assert "id" not in body
        assert sorted(body["members"], key=lambda m: m["id"]) == [
            {**ann_info, "connections": 2},
            {**bob_info, "connections": 1},
        ]
        assert api_login(user).get(presence_url("public:empty")).json()["members"] == []
    finally:
        for session in ("s_ann1", "s_ann2", "s_bob1"):
            async_to_sync(presence.remove)("public:lobby", session)


# ---------------------------------------------------------------- with sockets


@pytest.fixture
async def engine_async(request):
    """`engine` for async tests (the socket and the HTTP view share the test's event loop)."""
    with engine_backend(request) as kind:
        yield kind
    await sync_to_async(connections.close_all)()  # PostgreSQL drops no test database still in use


async def subscribed_socket(connect, user, channel: str):
    access, _ = await sync_to_async(make_tokens)(user)
    socket = await connect(token=access)
    await socket.recv_type("welcome")
    reply = await socket.request({"type": "subscribe", "channel": channel, "id": 1})
    assert reply["type"] == "subscribed", reply
    return socket


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("engine_async", ["memory", "redis"], indirect=True)
async def test_http_publication_reaches_a_subscribed_socket(engine_async, connect, api_login, user, staff):
    socket = await subscribed_socket(connect, user, "public:x")
    api = await sync_to_async(api_login)(staff)
    response = await sync_to_async(publish)(api, "public:x", {"text": "from http"})
    assert response.status_code == 201
    message = await socket.recv_type("message")
    assert message == {
        "type": "message",
        "channel": "public:x",
        "epoch": response.json()["epoch"],
        "offset": response.json()["offset"],
        "data": {"text": "from http"},
        "user": None,
        "ts": message["ts"],
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("engine_async", ["memory", "redis"], indirect=True)
async def test_presence_shows_a_subscribed_socket(engine_async, connect, api_login, user):
    socket = await subscribed_socket(connect, user, "public:room")
    api = await sync_to_async(api_login)(user)
    response = await sync_to_async(api.get)(presence_url("public:room"))
    assert response.json()["members"] == [{"id": user.pk, "username": "ann", "connections": 1}]
    await socket.request({"type": "unsubscribe", "channel": "public:room", "id": 2})
    response = await sync_to_async(api.get)(presence_url("public:room"))
    assert response.json()["members"] == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("engine_async", ["memory"], indirect=True)
async def test_http_history_matches_the_socket_history_reply(engine_async, connect, api_login, user, staff):
    socket = await subscribed_socket(connect, user, "public:same")
    api = await sync_to_async(api_login)(staff)
    for n in range(3):
        await sync_to_async(publish)(api, "public:same", n)
    reply = await socket.request({"type": "history", "channel": "public:same", "id": 9, "limit": 2})
    body = (await sync_to_async(api.get)(history_url("public:same"), {"limit": 2})).json()
    del reply["id"]
    assert json.dumps(body, sort_keys=True) == json.dumps(reply, sort_keys=True)
