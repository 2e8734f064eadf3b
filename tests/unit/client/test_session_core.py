"""The client's session core without any I/O: feed it events, check the actions it returns.

No socket, no event loop, no clock: `now` is an argument and `random` is fixed, so every
delay is exact. The driver's side (sockets, timers, the provider) is tested against the
fake server in the other files of this folder.
"""

import asyncio
import base64
import json
import socket

import pytest
from realtime_client import ClientState, Position, RealtimeError, SubscribedEvent, SubscriptionState
from realtime_client.actions import (
    ArmTimer,
    AskToken,
    Close,
    Deliver,
    Emit,
    Finish,
    Reconnect,
    Refresh,
    Report,
    Send,
    Settle,
    Stop,
)
from realtime_client.channels import EXPECT_PUSH
from realtime_client.session import Session

pytestmark = pytest.mark.unit

C, S = ClientState, SubscriptionState
URL = "ws://a/ws/"


@pytest.fixture(autouse=True)
def no_io(monkeypatch):
    """Any socket, or an event loop, fails the test: the core must do neither."""

    def refuse(*args, **kwargs):
        raise AssertionError("the session core opened a socket or an event loop")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(asyncio, "get_running_loop", refuse)
    monkeypatch.setattr(asyncio, "get_event_loop", refuse)


def make(urls=(URL,), token="t0", renewable=False, **options) -> Session:
    """A core whose backoff is exact: `random` is 1, delays 1, 2, 4, 8, 8 s."""
    options = {"min_delay": 1.0, "max_delay": 8.0, "random": lambda: 1.0, **options}
    return Session(list(urls), token=token, renewable=renewable, **options)


def frames(actions) -> list[dict]:
    return [action.frame for action in actions if isinstance(action, Send)]


def changes(actions) -> list:
    return [action.value for action in actions if isinstance(action, Emit) and action.event == "state"]


def feed(core: Session, frame: dict, now: float = 0.0) -> list:
    return core.frame_received(json.dumps(frame), now)


def connect(core: Session, now: float = 0.0, **welcome) -> tuple[dict, list]:
    """start (unless running), attempt, socket open, welcome: returns (auth frame, welcome's actions)."""
    if core.state is not C.CONNECTING:
        core.start()
    url, _ = core.next_attempt()
    (auth,) = frames(core.connected(url, now))
    fields = {"session": "s_1", "user": {"id": 7, "username": "ann"}, "heartbeat": 25, "resumed": False, **welcome}
    return auth, feed(core, {"type": "welcome", "id": auth["id"], **fields}, now)


def subscribed(core: Session, request: dict, epoch="e1", offset=0, **fields) -> list:
    return feed(core, {"type": "subscribed", "id": request["id"], "channel": request["channel"], "epoch": epoch,
                       "offset": offset, **fields})  # fmt: skip


def pub(channel: str, offset: int, epoch="e1") -> dict:
    return {"channel": channel, "epoch": epoch, "offset": offset, "data": offset, "user": 7, "ts": 1000 + offset}


def jwt(exp: float) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"h.{payload}.s"


# ------------------------------------------------------------ connecting


def test_connect_auth_welcome():
    core = make()
    (change,) = changes(core.start())
    assert (change.state, change.previous, change.url) == (C.CONNECTING, C.DISCONNECTED, URL)
    url, actions = core.next_attempt()
    assert url == URL and actions == []  # already connecting: no second event
    assert core.connected(url, now=100.0) == [Send({"type": "auth", "token": "t0", "id": 1})]
    assert core.open and not core.live and core.deadline == 110.0  # the welcome must come within 10 s
    actions = feed(core, {"type": "welcome", "id": 1, "session": "s_1", "user": {"id": 7, "username": "ann"},
                          "heartbeat": 25, "expires_at": 500}, now=101.0)  # fmt: skip
    (change,) = changes(actions)
    assert (change.state, change.resumed, change.url) == (C.CONNECTED, False, URL)
    assert core.live and core.session_id == "s_1" and core.user.username == "ann"
    assert core.deadline == 101.0 + 25 + 10 and core.link.expires_at == 500


def test_urls_round_robin_one_per_attempt():
    core = make(urls=["ws://a/", "ws://b/"])
    assert [core.next_attempt()[0] for _ in range(3)] == ["ws://a/", "ws://b/", "ws://a/"]


def test_subscribes_go_before_the_connected_event():
    core = make()
    assert core.subscribe("room:a") == []  # not connected: sent at the welcome
    assert core.channels.get("room:a").state is S.SUBSCRIBING
    _, actions = connect(core)
    assert [type(action) for action in actions] == [Send, Emit]
    assert frames(actions)[0] == {"type": "subscribe", "channel": "room:a", "id": 2}
    (request,) = frames(core.subscribe("room:b"))  # connected: at once
    assert request["channel"] == "room:b"
    assert core.subscribe("room:b") == []  # the same channel again: nothing


# ------------------------------------------------------------ replies and requests


def test_replies_are_matched_by_id_within_the_connection_only():
    core = make()
    connect(core)
    rid, actions = core.request({"type": "publish", "channel": "room:a", "data": 1})
    assert actions == [Send({"type": "publish", "channel": "room:a", "data": 1, "id": rid})]
    reply = {"type": "published", "id": rid, "channel": "room:a", "epoch": "e1", "offset": 5}
    assert feed(core, reply) == [Settle(rid, reply)]
    assert feed(core, reply) == []  # a second reply to the same id: nobody waits
    late, _ = core.request({"type": "presence", "channel": "room:a"})
    core.forget(late)  # timed out
    assert feed(core, {"type": "presence", "id": late, "members": []}) == []
    pending, _ = core.request({"type": "publish", "channel": "room:a", "data": 2})
    assert core.closed(1011, "") == [Settle(pending, None), Close(1000)]  # its connection ended first
    connect(core)
    assert feed(core, {"type": "published", "id": pending, "epoch": "e1", "offset": 6}) == []  # stale


def test_an_auth_error_and_a_server_error_are_reported():
    core = make()
    core.start()
    core.next_attempt()
    core.connected(URL, 0.0)
    (report,) = feed(core, {"type": "error", "id": 1, "code": "unauthorized", "message": "bad token"})
    assert isinstance(report, Report) and report.where == "auth" and report.error.code == "unauthorized"
    (report,) = feed(core, {"type": "error", "code": "internal", "message": "oops"})
    assert report.where == "server" and report.error.code == "internal"


def test_malformed_frames_are_reported_and_unknown_pushes_ignored():
    core = make()
    connect(core)
    core.subscribe("room:a")
    assert [type(a) for a in core.frame_received("not json", 1.0)] == [Report]
    assert [type(a) for a in core.frame_received("[1]", 1.0)] == [Report]
    assert [type(a) for a in feed(core, {"type": "message", "channel": "room:a"})] == []  # not subscribed yet
    assert feed(core, {"type": "mystery"}) == []
    assert feed(core, {"type": "ping"}) == [Send({"type": "pong"})]


# ------------------------------------------------------------ channels


def test_a_subscribe_reply_replays_deduped_then_live_messages_dedupe_and_resync():
    core = make()
    _, actions = connect(core)
    (request,) = frames(core.subscribe("room:a"))
    actions = subscribed(core, request, offset=3, recovered=False, publications=[pub("room:a", 2), pub("room:a", 3)])
    assert actions[0] == Emit("subscribed", SubscribedEvent("room:a", "e1", 3, False, False, 2), "room:a")
    assert [a.publication.offset for a in actions if isinstance(a, Deliver)] == [2, 3]
    channel = core.channels.get("room:a")
    assert channel.state is S.SUBSCRIBED and channel.position == Position("e1", 3)
    assert feed(core, {"type": "message", **pub("room:a", 3)}) == []  # a repeat
    (delivered,) = feed(core, {"type": "message", **pub("room:a", 4)})
    assert delivered.publication.offset == 4 and channel.position == Position("e1", 4)
    unsubscribe, resubscribe = frames(feed(core, {"type": "message", **pub("room:a", 7)}))  # 5 and 6 lost
    assert unsubscribe["type"] == "unsubscribe" and resubscribe["recover"] == {"epoch": "e1", "offset": 4}
    assert channel.state is S.SUBSCRIBING


def test_a_stale_subscribe_reply_is_dropped():
    core = make()
    connect(core)
    (first,) = frames(core.subscribe("room:a"))
    rid, actions = core.unsubscribe("room:a")
    assert [type(a) for a in actions] == [Emit, Finish, Send] and actions[0].event == "unsubscribed"
    (second,) = frames(core.subscribe("room:a"))
    assert subscribed(core, first, offset=100) == []  # superseded by the second subscribe
    assert subscribed(core, second, offset=5)[0].value.offset == 5
    assert core.channels.get("room:a").position == Position("e1", 5)
    assert core.unsubscribe("room:b") == (None, [Finish("room:b")])  # never wanted: nothing sent


def test_a_temporary_subscribe_error_arms_a_retry_tied_to_its_connection():
    core = make()
    connect(core)
    (request,) = frames(core.subscribe("room:a"))
    error, timer = feed(core, {"type": "error", "id": request["id"], "code": "unavailable", "message": "redis"})
    assert error.event == "error" and error.channel == "room:a"
    assert timer == ArmTimer(2.0, "subscribe-retry", core.generation, "room:a")  # backoff_delay(1) = 2 s
    (retry,) = frames(core.timer_fired(timer))
    assert retry["channel"] == "room:a"
    core.closed(1001)
    connect(core)
    assert core.timer_fired(timer) == []  # armed in the previous connection


def test_already_subscribed_without_its_push_starts_over():
    core = make()
    connect(core)
    (request,) = frames(core.subscribe("room:a"))
    reply = {"type": "error", "id": request["id"], "code": "already_subscribed", "message": "restored"}
    unsubscribe, again = frames(feed(core, reply))
    assert (unsubscribe["type"], again["type"], again["channel"]) == ("unsubscribe", "subscribe", "room:a")
    (denied,) = frames(core.subscribe("room:b"))
    actions = feed(core, {"type": "error", "id": denied["id"], "code": "permission_denied", "message": "no"})
    assert [getattr(a, "event", None) for a in actions] == ["error", "unsubscribed", None]
    assert not core.channels.get("room:b").wanted


def test_server_pushes_for_channels():
    core = make()
    connect(core)
    (request,) = frames(core.subscribe("room:a"))
    subscribed(core, request, offset=3)
    (again,) = frames(feed(core, {"type": "unsubscribed", "channel": "room:a", "reason": "insufficient_state"}))
    assert again["recover"] == {"epoch": "e1", "offset": 3}
    (join,) = feed(core, {"type": "join", "channel": "room:a", "user": {"id": 8, "username": "bo"}})
    assert (join.event, join.value.user.username) == ("join", "bo")
    actions = feed(core, {"type": "unsubscribed", "channel": "room:a", "reason": "removed"})
    assert [(type(a), getattr(a, "event", None)) for a in actions] == [
        (Emit, "error"), (Emit, "unsubscribed"), (Finish, None)
    ]  # fmt: skip
    assert core.channels.get("room:a").position is None
    (unsubscribe,) = frames(feed(core, {"type": "subscribed", "channel": "room:old", "epoch": "e1", "offset": 0}))
    assert unsubscribe["channel"] == "room:old"  # restored by the server but not wanted


# ------------------------------------------------------------ resume


def test_resume_sends_positions_and_waits_for_the_pushes():
    core = make()
    connect(core)
    (a,) = frames(core.subscribe("room:a"))
    subscribed(core, a, offset=4)
    core.subscribe("room:b")  # never answered: no position
    core.closed(1001)
    core.decide()
    url, _ = core.next_attempt()
    (auth,) = frames(core.connected(url, 0.0))
    assert auth["resume"] == "s_1" and auth["positions"] == {"room:a": {"epoch": "e1", "offset": 4}}
    actions = feed(core, {"type": "welcome", "id": auth["id"], "session": "s_1", "resumed": True, "heartbeat": 25})
    assert [f["channel"] for f in frames(actions)] == ["room:b"]  # room:a: the server pushes it
    assert core.channels.get("room:a").pending == EXPECT_PUSH and changes(actions)[0].resumed is True
    actions = feed(core, {"type": "subscribed", "channel": "room:a", "epoch": "e1", "offset": 6, "recovered": True,
                          "publications": [pub("room:a", n) for n in (4, 5, 6)]})  # fmt: skip
    assert actions[0].value.recovering and actions[0].value.recovered
    assert [a.publication.offset for a in actions if isinstance(a, Deliver)] == [5, 6]


def test_not_resumed_subscribes_again_with_recover():
    core = make()
    connect(core)
    (a,) = frames(core.subscribe("room:a"))
    subscribed(core, a, offset=4)
    core.closed(1011)
    core.decide()
    _, actions = connect(core, session="s_2", resumed=False)
    (again,) = frames(actions)
    assert again["recover"] == {"epoch": "e1", "offset": 4} and core.session_id == "s_2"


# ------------------------------------------------------------ the close-code policy and backoff


@pytest.mark.parametrize(
    ("code", "decision"),
    [(1000, Stop), (4500, Stop), (4503, Stop), (4509, Stop), (1001, Reconnect), (1011, Reconnect),
     (3999, Reconnect), (4004, Reconnect), (4011, Reconnect), (4009, Stop), (4501, Stop)],
)  # fmt: skip
def test_close_codes(code, decision):
    core = make()  # a fixed token: 4009 and 4501 stop
    connect(core)
    (close,) = core.closed(code, "")
    assert close == (Close(4004, "heartbeat_timeout") if code == 4004 else Close(1000))
    actions = core.decide()
    assert isinstance(actions[-1], decision)
    (change,) = changes(actions)
    assert change.code == code and change.state is (C.CLOSED if decision is Stop else C.DISCONNECTED)


def test_no_close_frame_uses_the_disconnect_frame_else_1006():
    core = make()
    connect(core)
    feed(core, {"type": "disconnect", "code": 4503, "reason": "forbidden", "reconnect": False})
    core.closed(None)
    assert (core.outcome.code, core.outcome.reason) == (4503, "forbidden")
    core.decide()
    connect(core)
    core.closed(None)
    assert (core.outcome.code, core.outcome.reason) == (1006, "abnormal")


def test_backoff_grows_until_welcome_then_resets():
    core = make()
    connect(core)
    delays = []
    for _ in range(5):
        core.closed(1011)
        delays.append(core.decide()[-1].delay)
        core.next_attempt()
        core.connected(URL, 0.0)  # opens, but no welcome
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    (auth_id,) = core.link.pending  # only the `auth` is in flight
    feed(core, {"type": "welcome", "id": auth_id, "session": "s_1"})
    core.closed(1011)
    assert core.decide()[-1] == Reconnect(1.0)


def test_disconnect_stops_whatever_ends_the_connection():
    core = make()
    connect(core)
    core.disconnecting()
    core.closed(1001)
    assert isinstance(core.decide()[-1], Stop)


def test_close_forgets_the_session_and_ends_iterators():
    core = make()
    connect(core)
    core.subscribe("room:a")
    actions = core.close(1000, "disconnect")
    assert actions[0] == Finish("room:a") and changes(actions)[0].state is C.CLOSED
    assert core.session_id is None and core.channels.get("room:a").wanted  # restored by the next connect()
    assert core.close(1000, "again") == [Finish("room:a")]  # already closed: no second event
    core.start()
    auth, _ = connect(core)
    assert "resume" not in auth


# ------------------------------------------------------------ liveness


def test_no_welcome_within_the_request_timeout():
    core = make(request_timeout=10.0)
    core.start()
    core.next_attempt()
    core.connected(URL, now=100.0)
    assert core.tick(109.9) == []
    assert core.tick(110.0) == [Close(1000)]
    assert (core.outcome.code, core.outcome.reason) == (None, "welcome_timeout") and not core.open
    assert isinstance(core.decide()[-1], Reconnect)


def test_silence_past_heartbeat_plus_timeout():
    core = make(heartbeat_timeout=10.0)
    connect(core, now=0.0, heartbeat=25)
    feed(core, {"type": "ping"}, now=30.0)  # any frame moves the deadline
    assert core.tick(64.9) == []
    assert core.tick(65.0) == [Close(4004, "heartbeat_timeout")]
    assert core.decide()[-1] == Reconnect(1.0)


# ------------------------------------------------------------ tokens


def test_when_the_provider_is_asked():
    core = make(token=None, renewable=True)
    assert core.token_wanted(now=0.0)  # no token yet
    core.token_received(jwt(exp=1000.0))
    assert not core.token_wanted(now=900.0)
    assert core.token_wanted(now=995.0)  # within 10 s of its exp
    core.token_received("opaque")
    assert not core.token_wanted(now=0.0)
    connect(core)
    core.closed(4009, "token_expired")
    assert isinstance(core.decide()[-1], Reconnect) and core.token_wanted(now=0.0)
    assert not make().token_wanted(now=0.0)  # a fixed token is never renewed


def test_4501_asks_the_provider_once_more():
    core = make(token="tok1", renewable=True)
    connect(core)
    core.closed(4501, "unauthorized")
    assert core.decide() == [AskToken()]
    assert isinstance(core.recheck("tok2")[-1], Reconnect) and core.token == "tok2"
    core.next_attempt()
    core.connected(URL, 0.0)
    core.closed(4501)  # again before any welcome
    actions = core.decide()
    assert isinstance(actions[-1], Stop) and changes(actions)[0].code == 4501
    core.start()
    connect(core)
    core.closed(4501)
    assert core.decide() == [AskToken()]
    assert isinstance(core.recheck("tok2")[-1], Stop)  # the same token: nothing new


@pytest.mark.parametrize(("error", "decision"), [(RuntimeError("vault down"), Reconnect),
                                                 (RealtimeError("unauthorized", "gone"), Stop)])  # fmt: skip
def test_4501_when_the_provider_raises(error, decision):
    core = make(token="tok1", renewable=True)
    connect(core)
    core.closed(4501)
    core.decide()
    report, *_, last = core.recheck_failed(error)
    assert report == Report(error, "token provider") and isinstance(last, decision) and core.force_token


def test_a_provider_failure_before_connecting():
    core = make(token=None, renewable=True)
    core.start()
    core.next_attempt()
    error = RuntimeError("503")
    assert core.token_failed(error) == [Report(error, "token provider")]
    assert isinstance(core.decide()[-1], Reconnect) and core.fatal is None
    core.next_attempt()
    terminal = RealtimeError("unauthorized", "no such user")
    core.token_failed(terminal)
    assert isinstance(core.decide()[-1], Stop) and core.fatal is terminal


def test_a_socket_that_does_not_open():
    core = make()
    core.start()
    core.next_attempt()
    assert core.connect_failed(OSError("refused")) == []
    actions = core.decide()
    assert changes(actions)[0].code == 1006 and changes(actions)[0].reason.startswith("connect failed")
    core.next_attempt()
    redirect = RealtimeError("redirect", "to another origin")
    assert core.connect_failed(redirect) == [Report(redirect, "connect")]
    assert isinstance(core.decide()[-1], Stop) and core.fatal is redirect


def test_expiring_starts_one_refresh_and_the_core_times_its_retries():
    core = make(token="tok1", renewable=True)
    connect(core)
    generation = core.generation
    assert feed(core, {"type": "expiring", "expires_at": 1000}) == [Refresh(generation, 1000.0)]
    assert feed(core, {"type": "expiring", "expires_at": 1000}) == []  # one refresh at a time
    assert core.refresh_delay(generation, 1000.0, attempt=0, now=990.0) == 1.0
    assert core.refresh_delay(generation, 1000.0, attempt=5, now=997.0) == 3.0  # never past expires_at
    assert core.refresh_delay(generation, 1000.0, attempt=0, now=1000.0) is None
    core.refreshed(generation, {"type": "refreshed", "expires_at": 1300})
    core.refresh_ended(generation)
    assert core.link.expires_at == 1300
    assert feed(core, {"type": "expiring", "expires_at": 1300}) == [Refresh(generation, 1300.0)]
    core.closed(1001)
    assert core.refresh_delay(generation, 1300.0, attempt=0, now=0.0) is None  # its connection ended
    assert not core.current(generation)


def test_expiring_with_a_fixed_token_is_only_logged(caplog):
    core = make()
    connect(core)
    assert feed(core, {"type": "expiring", "expires_at": 1000}) == []
    assert "cannot be refreshed" in caplog.text
