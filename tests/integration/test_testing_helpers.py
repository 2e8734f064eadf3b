"""INTEGRATION.md section 9: `realtime.testing`, the helpers a project tests its sockets with.

Used here as a project uses them: on `realtime_application(get_asgi_application())` (and on the
bare `websocket_application()`), with users of the project's user model and tokens the helper
mints, publishing through `realtime.publish`."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured
from django.test import TestCase, override_settings

from realtime.asgi import realtime_application, websocket_application
from realtime.publish import publish
from realtime.runtime import node
from realtime.support.conf import DEFAULT_NAMESPACES
from realtime.testing import FrameTimeout, RequestRefused, UnexpectedFrame, connect

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["project", "websocket"])
async def application(request):
    """The project's whole ASGI application (HTTP, WebSockets, lifespan), or its WebSocket side alone."""
    if request.param == "websocket":
        yield websocket_application()
        return
    await node.stop()
    yield realtime_application(get_asgi_application())
    await node.stop()  # the NodeMiddleware's beat task, started by the first socket


async def test_welcome_reaches_the_client(application, user):
    async with connect(application, user) as client:
        assert client.welcome["type"] == "welcome"
        assert client.welcome["user"] == {"id": user.pk, "username": "ann"}
        assert client.welcome["session"].startswith("s_")
        assert await client.request({"type": "ping"}) == {"type": "pong", "id": 1}
    assert client.communicator.future.done()  # closed at the end of the block, the consumer ended


async def test_a_publication_from_the_project_arrives_through_receive(backend, user):
    application = websocket_application()
    async with connect(application, user, subscribe=["public:lobby"]) as client:
        published = await publish("public:lobby", {"text": "hi"})
        message = await client.receive("message")
        assert (message["channel"], message["data"], message["user"]) == ("public:lobby", {"text": "hi"}, None)
        assert (message["epoch"], message["offset"]) == (published.epoch, published.offset)


async def test_subscribe_returns_subscribed_and_publish_published(application, user, make_user):
    bob = await sync_to_async(make_user)("bob")
    async with connect(application, user) as ann, connect(application, bob, subscribe=["public:lobby"]) as listener:
        subscribed = await ann.subscribe("public:lobby")
        assert (subscribed["type"], subscribed["channel"]) == ("subscribed", "public:lobby")
        published = await ann.publish("public:lobby", {"n": 1})
        assert (published["type"], published["offset"]) == ("published", subscribed["offset"] + 1)
        # Whether the push came before or after the reply, it waits for `receive`; the listener's
        # `join` of ann, which came first, is passed over.
        assert (await ann.receive("message"))["data"] == {"n": 1}
        assert (await listener.receive("message"))["user"] == user.pk
        assert (await ann.unsubscribe("public:lobby"))["type"] == "unsubscribed"


async def test_join_and_leave_are_passed_over_unless_asked_for(user, make_user):
    application = websocket_application()
    bob = await sync_to_async(make_user)("bob")
    async with connect(application, user, subscribe=["public:lobby"]) as ann:
        async with connect(application, bob, subscribe=["public:lobby"]):
            joined = [(await ann.receive("join"))["user"]["username"] for _ in range(2)]
            assert joined == ["ann", "bob"]  # her own subscribe's first
        await publish("public:lobby", "after bob left")
        assert (await ann.receive("message"))["data"] == "after bob left"  # bob's `leave` came first


async def test_a_server_ping_is_answered_while_receive_waits(user):
    with override_settings(REALTIME={"HEARTBEAT": 0.1}):
        async with connect(websocket_application(), user, subscribe=["public:lobby"]) as client:
            answered = asyncio.Event()
            send = client.send

            async def send_and_note(frame):
                await send(frame)
                if frame == {"type": "pong"}:
                    answered.set()

            client.send = send_and_note

            async def publish_once_answered():
                await answered.wait()
                await publish("public:lobby", "after a pong")

            publisher = asyncio.create_task(publish_once_answered())
            assert (await client.receive("message"))["data"] == "after a pong"
            await publisher
            assert await client.receive("ping") == {"type": "ping"}  # asked for, it is returned


# A project's own namespace with a sync rule that reads the database, as INTEGRATION.md 7 allows.
def staff_only(user, name: str) -> bool:
    return get_user_model().objects.filter(pk=user.pk, is_staff=True).exists()


STAFF = {**DEFAULT_NAMESPACES, "staff": {"subscribe": f"{__name__}.staff_only"}}


@override_settings(REALTIME={"NAMESPACES": STAFF})
async def test_a_rule_refusal_is_a_reply_of_request_and_raised_by_subscribe(application, user, make_user):
    boss = await sync_to_async(make_user)("boss", is_staff=True)
    async with connect(application, user) as ann, connect(application, boss) as staff:
        reply = await ann.request({"type": "subscribe", "channel": "staff:board", "id": 7})
        assert (reply["type"], reply["id"], reply["code"]) == ("error", 7, "permission_denied")
        with pytest.raises(RequestRefused) as refused:
            await ann.subscribe("staff:board")
        assert refused.value.code == "permission_denied" and refused.value.frame["type"] == "error"
        assert "staff:board" in str(refused.value) and "permission_denied" in str(refused.value)
        assert (await staff.subscribe("staff:board"))["type"] == "subscribed"
        assert await ann.request({"type": "ping"}) == {"type": "pong", "id": 2}  # (ids: 1 went to the subscribe)


async def test_expect_disconnect_after_a_deactivation(backend, application, user):
    async with connect(application, user) as client:
        user.is_active = False
        await user.asave()
        frame = await client.expect_disconnect(4503, "forbidden")
        assert frame["reconnect"] is False
        assert client.communicator.future.done()  # the close was answered: the consumer ended
        with pytest.raises(UnexpectedFrame, match="has ended"):
            await client.request({"type": "ping"})


async def test_a_disconnect_with_another_code_fails_expect_disconnect(user):
    async with connect(websocket_application(), user) as client:
        await user.adelete()  # revoked: 4503
        with pytest.raises(UnexpectedFrame, match="expected a disconnect 4009") as failed:
            await client.expect_disconnect(4009)
        assert failed.value.frame["code"] == 4503


async def test_a_bad_token_is_a_clear_error(application):
    with pytest.raises(UnexpectedFrame, match="no welcome for the token") as refused:
        async with connect(application, token="not-a-token"):
            pass  # pragma: no cover (never entered)
    assert refused.value.frame["type"] == "disconnect"
    assert (refused.value.frame["code"], refused.value.frame["reason"]) == (4501, "unauthorized")


async def test_an_inactive_user_is_refused_with_a_hint(make_user):
    retired = await sync_to_async(make_user)("retired", is_active=False)
    with pytest.raises(UnexpectedFrame, match="is the user active") as refused:
        async with connect(websocket_application(), retired):
            pass  # pragma: no cover (never entered)
    assert refused.value.frame["code"] == 4501


async def test_a_host_outside_allowed_hosts_is_refused_at_the_handshake(user):
    with pytest.raises(UnexpectedFrame, match="ALLOWED_HOSTS"):
        async with connect(websocket_application(), user, headers=[("Host", "evil.example")]):
            pass  # pragma: no cover (never entered)


@pytest.mark.parametrize(
    ("allowed", "debug", "host"),
    [([".example.org"], False, b"example.org"), (["*"], False, b"testserver"), ([], True, b"localhost")],
)
async def test_the_host_comes_from_allowed_hosts(user, allowed, debug, host):
    with override_settings(ALLOWED_HOSTS=allowed, DEBUG=debug):
        async with connect(websocket_application(), user) as client:
            headers = dict(client.communicator.scope["headers"])
            assert (headers[b"host"], headers[b"origin"]) == (host, b"http://" + host)


@override_settings(ALLOWED_HOSTS=[], DEBUG=False)
async def test_no_allowed_host_says_what_to_do(user):
    with pytest.raises(ImproperlyConfigured, match="add 'testserver'"):
        async with connect(websocket_application(), user):
            pass  # pragma: no cover (never entered)


async def test_connect_needs_a_user_or_a_token():
    with pytest.raises(TypeError, match="a user, or a token"):
        async with connect(websocket_application()):
            pass  # pragma: no cover (never entered)


async def test_a_timeout_names_the_frame_awaited_and_leaves_the_socket_open(user):
    async with connect(websocket_application(), user) as client:
        with pytest.raises(FrameTimeout, match="'message' frame") as timed_out:
            await client.receive("message", timeout=0.05)
        assert isinstance(timed_out.value, AssertionError) and isinstance(timed_out.value, TimeoutError)
        assert await client.request({"type": "ping"}) == {"type": "pong", "id": 1}


async def test_another_frame_fails_receive_and_stays_for_the_next(user):
    async with connect(websocket_application(), user) as client:
        await client.send("not json")
        await client.send(b"binary")
        with pytest.raises(UnexpectedFrame, match="expected a 'message' frame") as failed:
            await client.receive("message")
        assert failed.value.frame["code"] == "bad_request"
        assert await client.receive() == failed.value.frame
        assert (await client.receive("error"))["code"] == "bad_request"  # the binary frame's


async def test_a_disconnect_before_the_reply_fails_request_and_stays_for_receive(user):
    async with connect(websocket_application(), user) as client:
        user.is_active = False
        await user.asave()
        with pytest.raises(UnexpectedFrame, match="ended the socket before the reply to 'pong'"):
            await client.request({"type": "pong"})  # a `pong` gets no reply (docs/protocol.md 11.4)
        assert (await client.receive("disconnect"))["code"] == 4503
        with pytest.raises(UnexpectedFrame, match=r"closed \(4503\) while awaiting a 'message' frame") as closed:
            await client.receive("message")
        assert closed.value.frame == {"type": "websocket.close", "code": 4503, "reason": "forbidden"}


async def failing_after_welcome(scope, receive, send):
    """An application whose consumer fails at the first frame (as a bug in a project's rule might)."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '{"type": "welcome"}'})
    await receive()
    raise RuntimeError("boom")


async def test_an_application_that_fails_surfaces_at_once_not_at_the_timeout(user):
    with pytest.raises(RuntimeError, match="boom"):
        async with connect(failing_after_welcome, user, timeout=60) as client:
            async with asyncio.timeout(30):  # far below the client's own: the failure, not a timeout, ends it
                await client.request({"type": "ping"})


class InATestCase(TestCase):
    """A `TestCase` wraps the test in a transaction the socket cannot work in: `connect` says so."""

    async def test_connect_refuses_to_run(self):
        user = await get_user_model().objects.acreate(username="ann")
        with self.assertRaisesMessage(RuntimeError, "TransactionTestCase"):
            async with connect(websocket_application(), user):
                pass  # pragma: no cover (never entered)
