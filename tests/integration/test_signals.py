"""INTEGRATION.md section 8: `realtime.signals` over a real socket (WebsocketCommunicator).

Receivers run in tasks the socket never waits for; `signals.flush()` awaits every signal
sent so far, so a test asserts after the fact without sleeping.
"""

import logging

import pytest

from realtime import signals
from realtime.sessions.control import end_channel_for_user
from realtime.socket.consumer import RealtimeConsumer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FOUR = {
    "socket_connected": signals.socket_connected,
    "channel_subscribed": signals.channel_subscribed,
    "channel_unsubscribed": signals.channel_unsubscribed,
    "socket_disconnected": signals.socket_disconnected,
}


@pytest.fixture
def receive():
    """Connect receivers to the four signals for one test: `receive(receiver)`; disconnected after it."""
    connected = []

    def connect(receiver):
        for signal in FOUR.values():
            signal.connect(receiver, weak=False)
            connected.append((signal, receiver))

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


def name_of(signal) -> str:
    return next(name for name, each in FOUR.items() if each is signal)


def recorder(seen: list, *, asynchronous: bool):
    """A receiver (sync or async) that notes each signal with its arguments."""

    def note(signal, sender, **kwargs):
        seen.append((name_of(signal), sender, kwargs))

    if asynchronous:

        async def async_receiver(signal, sender, **kwargs):
            note(signal, sender, **kwargs)

        return async_receiver

    def sync_receiver(signal, sender, **kwargs):
        note(signal, sender, **kwargs)

    return sync_receiver


def summary(seen: list, session: str) -> list[tuple]:
    """(signal, its one event-specific argument) for one session's signals, in order."""
    out = []
    for name, sender, kwargs in seen:
        if kwargs["session"] != session:
            continue
        assert sender is RealtimeConsumer
        if name == "socket_connected":
            out.append((name, kwargs["scope"]["type"]))
        elif name == "socket_disconnected":
            out.append((name, kwargs["code"], kwargs["reason"]))
        else:
            out.append((name, kwargs["channel"]))
    return out


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_receivers_see_the_four_signals_in_order(login, receive, asynchronous):
    seen: list = []
    receive(recorder(seen, asynchronous=asynchronous))
    ann = await login("ann")
    session = ann.welcome["session"]
    for rid, channel in enumerate(["public:a", "public:b"], 1):
        assert (await ann.request({"type": "subscribe", "id": rid, "channel": channel}))["type"] == "subscribed"
    assert (await ann.request({"type": "unsubscribe", "id": 3, "channel": "public:a"}))["type"] == "unsubscribed"
    await end_channel_for_user(ann.user.pk, "public:b", "removed")  # the server ends a subscription
    assert (await ann.recv_type("unsubscribed"))["channel"] == "public:b"
    assert (await ann.request({"type": "subscribe", "id": 4, "channel": "public:c"}))["type"] == "subscribed"
    await ann.close()  # still subscribed to public:c
    await signals.flush()

    assert summary(seen, session) == [
        ("socket_connected", "websocket"),
        ("channel_subscribed", "public:a"),
        ("channel_subscribed", "public:b"),
        ("channel_unsubscribed", "public:a"),
        ("channel_unsubscribed", "public:b"),
        ("channel_subscribed", "public:c"),
        ("channel_unsubscribed", "public:c"),  # the channels held at disconnect end first
        ("socket_disconnected", 1000, "client_closed"),
    ]
    assert all(kwargs["user"].pk == ann.user.pk for _, _, kwargs in seen)


async def test_a_raising_receiver_is_logged_and_the_socket_keeps_working(login, receive, caplog):
    seen: list = []

    def broken(signal, sender, **kwargs):
        raise RuntimeError("sync receiver broke")

    async def broken_async(signal, sender, **kwargs):
        raise RuntimeError("async receiver broke")

    receive(broken)
    receive(broken_async)
    receive(recorder(seen, asynchronous=False))
    caplog.set_level(logging.ERROR, logger="realtime")
    ann, bob = await login("ann"), await login("bob")
    session = ann.welcome["session"]
    assert (await ann.request({"type": "subscribe", "id": 1, "channel": "public:a"}))["type"] == "subscribed"
    await signals.flush()  # the receivers have raised for connect and subscribe
    published = await bob.request({"type": "publish", "id": 2, "channel": "public:a", "data": "hi"})
    assert published["type"] == "published"
    assert (await ann.recv_type("message"))["data"] == "hi"
    await ann.close()
    await signals.flush()

    assert [entry[0] for entry in summary(seen, session)] == list(FOUR)  # the others still hear every one
    failures = [r for r in caplog.records if r.name.startswith("realtime") and r.levelno == logging.ERROR]
    messages = [r.getMessage() for r in failures if session in r.getMessage()]
    for name in FOUR:
        assert sum(name in message and "broken" in message for message in messages) == 2, messages
    assert all(r.exc_info for r in failures)


async def test_no_signal_for_a_socket_that_never_authenticated(connect, receive):
    seen: list = []
    receive(recorder(seen, asynchronous=True))
    quiet = await connect()  # no credentials: open, never authenticated
    await quiet.close()
    refused = await connect(token="not-a-token")  # bad credentials: closed by the server
    await refused.expect_disconnect(4501)
    await refused.communicator.wait()
    await signals.flush()
    assert seen == []
