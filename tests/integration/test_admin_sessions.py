"""The admin pages of socket sessions and server processes, and the live controls that reach sockets."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import timedelta
from unittest.mock import ANY

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import Client
from django.utils import timezone

from realtime.admin import close_code_label
from realtime.engine import get_engine
from realtime.engine.redis import RedisEngine
from realtime.models import Connection, Node
from realtime.pubsub.switchboard import switchboard
from tests.conftest import override_realtime
from tests.recorder import Recorder

pytestmark = [pytest.mark.integration]

CHANGELIST = "/admin/realtime/connection/"
RECEIVE_TIMEOUT = 5  # a limit on waiting for the event, never a measurement
DISCONNECT = {"do": "disconnect", "code": 4503, "reason": "forbidden"}
FORCE_RECONNECT = {"do": "disconnect", "code": 4011, "reason": "force_reconnect"}


def make_conn(*, user=None, node="host:1", opened_ago: float = 60, closed: bool = False, **fields) -> Connection:
    if closed:
        fields = {"closed_at": timezone.now(), "close_code": 4503, "close_reason": "forbidden", **fields}
    fields.setdefault("session_id", f"s_{uuid.uuid4().hex[:16]}")
    fields.setdefault("channel_name", f"{uuid.uuid4().hex[:12]}.1")  # a socket address no socket has
    opened_at = timezone.now() - timedelta(seconds=opened_ago)
    return Connection.objects.create(user=user, node=node, opened_at=opened_at, last_seen=opened_at, **fields)


def detail(row: Connection) -> str:
    return f"{CHANGELIST}{row.pk}/change/"


def changelist(client, **params):
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return response.content.decode()


def shown(page: str, *rows: Connection) -> list[bool]:
    return [row.session_id in page for row in rows]


@pytest.fixture
def rows(make_user):
    """Two open sessions of ann and one closed one of bob, on different nodes."""
    ann, bob = make_user("ann"), make_user("bob")
    return {
        "ann_old": make_conn(user=ann, node="alpha:1", opened_ago=300, remote_addr="10.0.0.7", auth_method="header"),
        "ann_new": make_conn(user=ann, node="beta:2", opened_ago=10, remote_addr="10.0.0.8", auth_method="query"),
        "bob_closed": make_conn(user=bob, node="alpha:1", opened_ago=5, closed=True, remote_addr="192.168.1.9"),
    }


def told(event: dict, *recorders: Recorder) -> dict:
    """`event` as one control event names these sockets (by address, sorted), stamped when it was sent."""
    return {**event, "to": sorted(recorder.address for recorder in recorders), "at": ANY}


async def receive(recorder: Recorder) -> dict:
    return await recorder.receive(RECEIVE_TIMEOUT)


async def nothing_for(recorder: Recorder) -> bool:
    """True when no event reached `recorder`: the send is done before the admin response, and a
    round trip through the control topic sent now is heard after it."""
    await asyncio.wait_for(switchboard().ping(), RECEIVE_TIMEOUT)
    return recorder.unread() == 0


@pytest.fixture
async def live(admin_client):
    """Open rows whose channel_name is the address of a recorder at the switchboard: `row, recorder = await live()`."""

    async def open_row(**fields):
        board = switchboard()
        recorder = Recorder(board.address())
        await board.join(recorder, recorder.address, f"nobody-{uuid.uuid4().hex}")  # reached by its address alone
        row = await sync_to_async(make_conn)(channel_name=recorder.address, **fields)
        return row, recorder

    yield open_row
    await sync_to_async(connections.close_all)()  # PostgreSQL drops no test database still in use


async def run_action(client, action: str, *rows: Connection):
    return await sync_to_async(client.post)(
        CHANGELIST, {"action": action, "_selected_action": [row.pk for row in rows]}, follow=True
    )


# ---------------------------------------------------------------- list, filters, search


@pytest.mark.django_db
def test_changelist_shows_the_columns_and_open_rows_first(admin_client, rows):
    page = changelist(admin_client)
    for column in ("session", "user", "state", "opened", "ended", "close", "node", "auth"):
        assert f"column-{column}" in page
    positions = [page.index(rows[key].session_id) for key in ("ann_new", "ann_old", "bob_closed")]
    assert positions == sorted(positions)  # open (newest first), then closed
    assert page.count('<td class="field-state">open</td>') == 2
    assert page.count('<td class="field-state">closed</td>') == 1
    assert '<td class="field-close">4503 forbidden</td>' in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"open": "yes"}, [True, True, False]),
        ({"open": "no"}, [False, False, True]),
        ({"node": "alpha:1"}, [True, False, True]),
        ({"close_code": "4503"}, [False, False, True]),
        ({"close_code": "x"}, [False, False, False]),
        ({"auth_method": "header"}, [True, False, False]),
        ({"q": "bob"}, [False, False, True]),
        ({"q": "10.0.0.8"}, [False, True, False]),
    ],
)
def test_filters_and_search(admin_client, rows, params, expected):
    page = changelist(admin_client, **params)
    assert shown(page, rows["ann_old"], rows["ann_new"], rows["bob_closed"]) == expected


@pytest.mark.django_db
def test_filter_by_user_and_search_by_session_id(admin_client, rows):
    ann = rows["ann_old"].user
    page = changelist(admin_client, user__id__exact=ann.pk)
    assert shown(page, rows["ann_old"], rows["ann_new"], rows["bob_closed"]) == [True, True, False]
    page = changelist(admin_client, q=rows["ann_old"].session_id)
    assert shown(page, rows["ann_old"], rows["ann_new"], rows["bob_closed"]) == [True, False, False]
    assert "4503 forbidden" in changelist(admin_client)  # the close code filter names its reason


@pytest.mark.parametrize(("code", "label"), [(4503, "4503 forbidden"), (1006, "1006 stale"), (4999, "4999")])
def test_close_code_labels(code, label):
    assert close_code_label(code) == label


# ---------------------------------------------------------------- detail page


@pytest.mark.django_db
def test_detail_page_is_read_only_with_controls_for_an_open_row(admin_client, rows):
    row = rows["ann_old"]
    page = admin_client.get(detail(row)).content.decode()
    assert row.session_id in page and "10.0.0.7" in page
    assert 'name="session_id"' not in page and 'name="_save"' not in page
    assert f"{detail(row).removesuffix('change/')}disconnect/" in page
    assert f"{detail(row).removesuffix('change/')}force-reconnect/" in page
    # Posting the form changes nothing: sessions are records.
    assert admin_client.post(detail(row), {"close_reason": "edited"}).status_code == 403
    assert Connection.objects.get(pk=row.pk).close_reason == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("resumed", "says"), [(False, "no: a new session"), (True, "yes: this socket resumed an earlier session")]
)
def test_the_detail_page_says_once_and_consistently_whether_the_socket_resumed(admin_client, resumed, says):
    """It showed "Resumed: ✗" above the help text "this socket resumed an earlier session"."""
    page = admin_client.get(detail(make_conn(resumed=resumed))).content.decode()
    assert says in page
    assert page.count("resumed an earlier session") == int(resumed)
    assert "icon-no.svg" not in page and "icon-yes.svg" not in page  # no icon that contradicts the words


@pytest.mark.django_db
def test_detail_page_of_a_closed_row_has_no_controls(admin_client, rows):
    page = admin_client.get(detail(rows["bob_closed"])).content.decode()
    assert "force-reconnect/" not in page and "live-socket-controls" not in page


@pytest.mark.django_db
def test_no_add_and_delete_for_superusers_only(admin_client, client, make_user, rows):
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert "delete_selected" in changelist(admin_client)
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="delete_connection"))
    viewer.user_permissions.add(Permission.objects.get(codename="view_connection"))
    client.force_login(viewer)
    page = changelist(client)
    assert "delete_selected" not in page and 'value="disconnect"' not in page  # no change permission: no controls
    row = rows["ann_old"]
    assert "live-socket-controls" not in client.get(detail(row)).content.decode()
    assert client.post(f"{CHANGELIST}{row.pk}/disconnect/").status_code == 403


@pytest.mark.django_db
def test_non_staff_are_sent_to_the_login_page(client, make_user, rows):
    client.force_login(make_user("eve"))
    row = rows["ann_old"]
    for response in (client.get(CHANGELIST), client.post(f"{CHANGELIST}{row.pk}/disconnect/")):
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_controls_are_post_only_with_csrf(admin_user, rows):
    row = rows["ann_old"]
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.get(f"{CHANGELIST}{row.pk}/disconnect/").status_code == 405
    assert strict.post(f"{CHANGELIST}{row.pk}/disconnect/").status_code == 403  # no CSRF token


@pytest.mark.django_db
def test_control_of_a_missing_row_redirects_with_a_message(admin_client):
    response = admin_client.post(f"{CHANGELIST}999999/force-reconnect/", follow=True)
    assert "doesn’t exist" in response.content.decode()


@pytest.mark.django_db
def test_an_unreachable_engine_is_reported_not_a_500(admin_client, rows, redis_prefix):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with override_realtime(REDIS_URL=f"redis://127.0.0.1:{port}/0", REDIS_PREFIX=redis_prefix):
        response = admin_client.post(
            CHANGELIST, {"action": "disconnect", "_selected_action": [rows["ann_old"].pk]}, follow=True
        )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Could not send the control event (" in text and "); nobody was told." in text
    assert "Told " not in text


# ---------------------------------------------------------------- node list


@pytest.mark.django_db
def test_node_list_shows_liveness_and_open_connections(admin_client, rows):
    Node.objects.create(name="alpha:1", hostname="alpha", pid=1, last_seen=timezone.now())
    Node.objects.create(name="beta:2", hostname="beta", pid=2, last_seen=timezone.now() - timedelta(hours=1))
    page = admin_client.get("/admin/realtime/node/").content.decode()
    assert "alpha:1" in page and "beta:2" in page
    assert page.count('alt="True"') == 1 and page.count('alt="False"') == 1
    assert "?node=alpha%3A1&amp;open=yes" in page  # alpha's one open row (bob's is closed), linked
    assert admin_client.get("/admin/realtime/node/add/").status_code == 403
    node = Node.objects.get(name="alpha:1")
    assert admin_client.get(f"/admin/realtime/node/{node.pk}/change/").status_code == 200


# ---------------------------------------------------------------- the event reaches the socket's address


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("action", "event"), [("disconnect", DISCONNECT), ("force_reconnect", FORCE_RECONNECT)])
async def test_actions_send_the_event_to_open_rows_only(admin_client, live, action, event):
    first, first_recorder = await live()
    second, second_recorder = await live()
    closed, closed_recorder = await live(closed=True)

    response = await run_action(admin_client, action, first, second, closed)

    assert response.status_code == 200
    text = response.content.decode()
    assert f"Told 2 open connection(s) to close with {event['code']} {event['reason']}." in text
    assert "1 selected connection(s) were already closed." in text
    assert await receive(first_recorder) == told(event, first_recorder, second_recorder)  # one event names both
    assert await receive(second_recorder) == told(event, first_recorder, second_recorder)
    assert await nothing_for(first_recorder) and await nothing_for(second_recorder)  # once each
    assert await nothing_for(closed_recorder)


@pytest.mark.django_db(transaction=True)
async def test_action_with_only_closed_rows_tells_nobody(admin_client, live):
    closed, recorder = await live(closed=True)
    response = await run_action(admin_client, "disconnect", closed)
    assert "Told 0 open connection(s)" in response.content.decode()
    assert await nothing_for(recorder)


@pytest.mark.django_db(transaction=True)
async def test_open_rows_without_an_address_are_reported(admin_client, live):
    row, recorder = await live()
    nameless = await sync_to_async(make_conn)(channel_name="")
    response = await run_action(admin_client, "force_reconnect", row, nameless)
    assert "1 open connection(s) have no address and could not be told." in response.content.decode()
    assert await receive(recorder) == told(FORCE_RECONNECT, recorder)


@pytest.mark.django_db(transaction=True)
async def test_disconnect_action_through_redis(admin_client, redis_layer, live):
    row, recorder = await live()
    assert isinstance(get_engine(), RedisEngine)  # the event travels through Redis's fan-out
    await run_action(admin_client, "disconnect", row)
    assert await receive(recorder) == told(DISCONNECT, recorder)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("button", "event"), [("disconnect", DISCONNECT), ("force-reconnect", FORCE_RECONNECT)])
async def test_detail_page_buttons_send_the_event(admin_client, live, button, event):
    row, recorder = await live()

    response = await sync_to_async(admin_client.post)(f"{CHANGELIST}{row.pk}/{button}/")

    assert response.status_code == 302 and response["Location"] == detail(row)
    assert await receive(recorder) == told(event, recorder)
    page = (await sync_to_async(admin_client.get)(response["Location"])).content.decode()
    assert "Told 1 open connection(s)" in page


@pytest.mark.django_db(transaction=True)
async def test_detail_button_on_a_closed_row_tells_nobody(admin_client, live):
    row, recorder = await live(closed=True)
    response = await sync_to_async(admin_client.post)(f"{CHANGELIST}{row.pk}/disconnect/", follow=True)
    assert "were already closed" in response.content.decode()
    assert await nothing_for(recorder)
