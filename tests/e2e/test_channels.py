"""Channels across two real daphne processes on one Redis: ordering, recovery, presence, rooms.

Every server runs the Redis engine and a channels-redis layer (REDIS_URL is set by
the harness). What is checked is the delivery contract of PROTOCOL section 4: each
subscriber gets every publication after its position exactly once, in offset
order, across the switch from the `publications` of `subscribed` to live
`message` pushes, whichever process published it; and `join`/`leave`/`presence`
agree across processes, including after a process is killed.

Waits are on frames (`Inbox.wait_for`) or bounded polls; latencies are printed,
never asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from realtime.models import Room
from realtime.support.conf import DEFAULT_NAMESPACES

from .client import Inbox
from .servers import DaphneServer
from .web import HttpSession

pytestmark = [pytest.mark.e2e]

# Generous limits for the publishers (the defaults allow 50 frames/s per socket) and
# a history long enough to replay a whole run, so `recovered` is always true here.
NAMESPACES = {**DEFAULT_NAMESPACES, "public": {**DEFAULT_NAMESPACES["public"], "history_size": 1000}}
CHANNEL_ENV = {"REALTIME_RATE": 5000, "REALTIME_RATE_BURST": 5000, "REALTIME_NAMESPACES": json.dumps(NAMESPACES)}
FAST_NODES = {"REALTIME_NODE_HEARTBEAT": 0.3, "REALTIME_CLEANUP_INTERVAL": 0.3}
WAIT = 20.0  # a bound on waiting for frames or a gate, far above need; never a measurement
POLL = 0.1  # seconds between presence polls

RACE = "public:race"
SOCKET_PUBLISHERS = 3
PER_SOCKET = 80
HTTP_PUBLISHES = 60
TOTAL = SOCKET_PUBLISHERS * PER_SOCKET + HTTP_PUBLISHES  # 300
WINDOW = 10  # publications in flight per publishing socket


# ---------------------------------------------------------------- helpers


async def inbox(ws, server: DaphneServer, token: str, name: str) -> Inbox:
    """An authenticated connection to `server`, read by an `Inbox` from its `welcome` on."""
    client = await ws(server, token=token, welcome=True)
    return Inbox(client, name)


async def subscribe(box: Inbox, channel: str, recover: dict[str, Any] | None = None) -> dict[str, Any]:
    """`subscribe` (with `recover` when given); fails unless the reply is `subscribed`."""
    frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if recover is not None:
        frame["recover"] = recover
    reply = await box.request(frame, WAIT)
    assert reply["type"] == "subscribed" and reply["channel"] == channel, reply
    return reply


async def unsubscribe(box: Inbox, channel: str) -> dict[str, Any]:
    """`unsubscribe`; fails unless the reply is `unsubscribed`."""
    reply = await box.request({"type": "unsubscribe", "channel": channel}, WAIT)
    assert reply["type"] == "unsubscribed", reply
    return reply


def http_publisher(server: DaphneServer, access: str) -> Callable[[str, Any], dict[str, Any]]:
    """A blocking `POST /api/realtime/publish/` to `server` as a staff user: returns the 201 body."""

    def post(channel: str, data: Any) -> dict[str, Any]:
        """Publish `data` to `channel`; the body of the 201."""
        response = HttpSession(server.url).post(
            "/api/realtime/publish/",
            json={"channel": channel, "data": data},
            headers={"Authorization": f"Bearer {access}"},
        )
        assert response.status == 201, (response.status, response.body[:300])
        return response.json()

    return post


async def presence_of(box: Inbox, channel: str) -> dict[Any, int]:
    """`presence` over the socket: {username: connections}."""
    reply = await box.request({"type": "presence", "channel": channel}, WAIT)
    assert reply["type"] == "presence", reply
    return {member["username"]: member["connections"] for member in reply["members"]}


async def poll_presence(box: Inbox, channel: str, expected: dict[str, int], limit: float = WAIT) -> None:
    """Ask for `presence` until it shows exactly `expected` ({username: connections}); fail after `limit` s."""
    deadline = time.monotonic() + limit
    while (members := await presence_of(box, channel)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"presence of {channel} on {box.name} stayed {members}, expected {expected}")
        await asyncio.sleep(POLL)


def presence_pushes(box: Inbox, kind: str, channel: str, username: str, start: int = 0) -> list[dict[str, Any]]:
    """The `join` or `leave` pushes about `username` on `channel` received so far."""
    return [frame for frame in box.of_type(kind, channel, start) if frame["user"]["username"] == username]


@dataclass
class Progress:
    """What the publishers got back: offset -> (data, user id), and gates that hold them at counts.

    `gate(count, event)` makes every publisher wait, before its next publication
    once `count` publications are confirmed, until `event` is set (a subscriber has
    sent its `subscribe`), so that subscribers join while publishing goes on.
    """

    published: dict[int, tuple[Any, int | None]] = field(default_factory=dict)
    epochs: set[str] = field(default_factory=set)
    failures: list[Any] = field(default_factory=list)
    gates: list[tuple[int, asyncio.Event]] = field(default_factory=list)
    http_positions: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (count then, reply)
    last_reply: dict[str, Any] | None = None
    _waiters: list[tuple[int, asyncio.Future]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Publications confirmed so far."""
        return len(self.published)

    def add(self, reply: dict[str, Any], data: Any, user: int | None) -> None:
        """Record a `published` reply (or a 201 body) for `data`."""
        if reply.get("type", "published") != "published":
            self.failures.append(reply)
            return
        if reply["offset"] in self.published:
            self.failures.append(f"offset {reply['offset']} given out twice: {reply}")
        self.published[reply["offset"]] = (data, user)
        self.last_reply = reply
        self.epochs.add(reply["epoch"])
        waiters, self._waiters = self._waiters, []
        for threshold, future in waiters:
            if self.count >= threshold and not future.done():
                future.set_result(None)
            elif not future.done():
                self._waiters.append((threshold, future))

    def gate(self, count: int) -> asyncio.Event:
        """An event the publishers wait for once `count` publications are confirmed."""
        event = asyncio.Event()
        self.gates.append((count, event))
        return event

    async def pass_gates(self) -> None:
        """Wait (bounded) at every gate whose count is reached and whose event is not set yet."""
        for count, event in self.gates:
            if self.count >= count and not event.is_set():
                async with asyncio.timeout(WAIT):
                    await event.wait()

    async def reached(self, count: int) -> None:
        """Wait (bounded) until `count` publications are confirmed."""
        if self.count >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        async with asyncio.timeout(WAIT):
            await future


async def publish_from_socket(box: Inbox, channel: str, source: str, count: int, progress: Progress) -> None:
    """Publish `count` publications `{"src", "n"}` from one socket, `WINDOW` in flight, through the gates."""
    slots = asyncio.Semaphore(WINDOW)
    replies = []
    user = box.client.welcome["user"]["id"]
    for n in range(count):
        await progress.pass_gates()
        await slots.acquire()
        data = {"src": source, "n": n}
        reply = await box.start({"type": "publish", "channel": channel, "data": data})

        def done(future: asyncio.Future, data: dict[str, Any] = data) -> None:
            """Free the window slot and record the position the reply gave out."""
            slots.release()
            if not future.cancelled() and future.exception() is None:
                progress.add(future.result(), data, user)

        reply.add_done_callback(done)
        replies.append(reply)
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*replies)


async def publish_over_http(posts: list[Callable], channel: str, count: int, progress: Progress) -> None:
    """Publish `count` publications `{"src": "http", "n"}` server side, alternating between the servers."""
    for n in range(count):
        await progress.pass_gates()
        data = {"src": "http", "n": n}
        reply = await asyncio.to_thread(posts[n % len(posts)], channel, data)
        progress.add(reply, data, None)
        progress.http_positions.append((progress.count, reply))


@dataclass
class Segment:
    """One subscription's stream on a connection: where it started and the publications it delivered."""

    reply: dict[str, Any]
    after: int  # the position it starts after: the `recover` offset, or the reply's offset
    publications: list[dict[str, Any]] = field(default_factory=list)
    ended_by: dict[str, Any] | None = None


def segments(box: Inbox, channel: str, starts: dict[Any, int]) -> list[Segment]:
    """Split a connection's frames into its subscriptions of `channel`.

    `starts` maps each `subscribe` request id to the offset it starts after. A
    `message` outside any subscription fails the test.
    """
    found: list[Segment] = []
    current: Segment | None = None
    for frame in box.frames:
        if frame.get("channel") != channel:
            continue
        kind = frame["type"]
        if kind == "subscribed":
            assert current is None, f"{box.name}: subscribed twice: {frame}"
            current = Segment(frame, starts[frame["id"]], list(frame["publications"]))
            found.append(current)
        elif kind == "message":
            assert current is not None, f"{box.name}: a message outside a subscription: {frame}"
            current.publications.append(frame)
        elif kind == "unsubscribed":
            assert current is not None, f"{box.name}: unsubscribed while not subscribed: {frame}"
            current.ended_by = frame
            current = None
    return found


def check_segment(name: str, segment: Segment, end: int, progress: Progress) -> None:
    """Exactly the publications `after+1 .. end`, in order, once each, with the data that was published."""
    offsets = [publication["offset"] for publication in segment.publications]
    expected = list(range(segment.after + 1, end + 1))
    if offsets != expected:
        duplicates = sorted({o for o in offsets if offsets.count(o) > 1})
        missing = sorted(set(expected) - set(offsets))
        out_of_order = [(a, b) for a, b in zip(offsets, offsets[1:], strict=False) if b <= a][:5]
        pytest.fail(
            f"{name}: after {segment.after} got {len(offsets)} publications, expected {len(expected)} "
            f"(to {end}); duplicates {duplicates[:10]}, missing {missing[:10]}, out of order {out_of_order}"
        )
    (epoch,) = progress.epochs
    for publication in segment.publications:
        data, user = progress.published[publication["offset"]]
        assert (publication["data"], publication["user"], publication["epoch"]) == (data, user, epoch), publication


# ---------------------------------------------------------------- concurrency


async def test_racing_publishers_every_subscriber_gets_each_publication_once_in_order(
    servers, ws, new_user, tokens, timings
):
    """300 publications from 3 sockets and the HTTP API on both servers, racing, to one channel.

    Subscribers on both servers, two from the start and three joining mid-stream
    with `recover` (from an earlier short subscription, from a `published` reply's
    position, from offset 0): each gets every publication after its position
    exactly once and in order, `publications` then live `message`s.
    """
    a, b = await servers(2, **CHANNEL_ENV)
    users = {name: await new_user(name) for name in ("pub1", "pub2", "pub3", "sub1", "sub2", "sub3")}
    root = await new_user("root", is_staff=True)
    token = {name: (await tokens(user))[0] for name, user in users.items()}
    posts = [http_publisher(server, (await tokens(root))[0]) for server in (a, b)]

    publishers = [
        await inbox(ws, server, token[name], name) for name, server in (("pub1", a), ("pub2", b), ("pub3", a))
    ]
    early = [await inbox(ws, a, token["sub1"], "early-a"), await inbox(ws, b, token["sub2"], "early-b")]
    joiners = {
        "short-then-recover-b": await inbox(ws, b, token["sub1"], "short-then-recover-b"),
        "from-published-a": await inbox(ws, a, token["sub2"], "from-published-a"),
        "from-zero-b": await inbox(ws, b, token["sub3"], "from-zero-b"),
    }
    starts: dict[str, dict[Any, int]] = {box.name: {} for box in [*early, *joiners.values()]}
    for box in early:
        reply = await subscribe(box, RACE)
        assert (reply["offset"], reply["publications"], reply["recovered"]) == (0, [], False), reply
        starts[box.name][reply["id"]] = reply["offset"]

    progress = Progress()
    first_join, recover_join, published_join, zero_join = (progress.gate(n) for n in (40, 150, 200, 250))
    joined_at: dict[str, int] = {}

    async def join(box: Inbox, gate: asyncio.Event, recover: dict[str, Any] | None) -> dict[str, Any]:
        """Subscribe while the publishers wait at `gate` only until the request is sent."""
        frame: dict[str, Any] = {"type": "subscribe", "channel": RACE, "id": box.next_id()}
        if recover is not None:
            frame["recover"] = recover
        future = await box.start(frame)
        gate.set()
        async with asyncio.timeout(WAIT):
            reply = await future
        assert reply["type"] == "subscribed", reply
        starts[box.name][reply["id"]] = recover["offset"] if recover is not None else reply["offset"]
        joined_at[box.name] = reply["offset"]
        if recover is not None:
            assert reply["recovered"] is True, reply
        return reply

    async def short_then_recover() -> None:
        """Subscribe, take a few live messages, unsubscribe, and come back later with `recover`."""
        box = joiners["short-then-recover-b"]
        await progress.reached(40)
        first = await join(box, first_join, None)
        await box.wait_for(lambda: box.last_offset.get(RACE, 0) >= first["offset"] + 5, WAIT, "5 live messages")
        await unsubscribe(box, RACE)
        last = box.last_offset[RACE]
        await progress.reached(150)
        await join(box, recover_join, {"epoch": first["epoch"], "offset": last})

    async def from_published() -> None:
        """Recover from the position of a reply seen long before (the HTTP API's 201, else a `published`)."""
        await progress.reached(100)
        _, position = progress.http_positions[-1] if progress.http_positions else (0, progress.last_reply)
        await progress.reached(200)
        recover = {"epoch": position["epoch"], "offset": position["offset"]}
        await join(joiners["from-published-a"], published_join, recover)

    async def from_zero() -> None:
        """Recover everything: offset 0 of the channel's epoch."""
        await progress.reached(250)
        (epoch,) = progress.epochs
        await join(joiners["from-zero-b"], zero_join, {"epoch": epoch, "offset": 0})

    started = time.monotonic()
    await asyncio.gather(
        *(publish_from_socket(box, RACE, box.name, PER_SOCKET, progress) for box in publishers),
        publish_over_http(posts, RACE, HTTP_PUBLISHES, progress),
        short_then_recover(),
        from_published(),
        from_zero(),
    )
    published = time.monotonic()
    assert not progress.failures, progress.failures[:5]
    assert sorted(progress.published) == list(range(1, TOTAL + 1)), "offsets are not exactly 1..300"
    assert len(progress.epochs) == 1, progress.epochs

    subscribers = [*early, *joiners.values()]
    for box in subscribers:
        await box.wait_for(lambda box=box: box.last_offset.get(RACE, 0) >= TOTAL, WAIT, f"offset {TOTAL}")
    timings(f"{TOTAL} racing publications, first publish -> confirmed", published - started)
    timings("first publish -> every subscriber has all", time.monotonic() - started)
    for box in subscribers:
        await box.request({"type": "ping"})  # whatever the server sent before its pong is in by now
        found = segments(box, RACE, starts[box.name])
        assert [segment.ended_by is not None for segment in found] == [True] * (len(found) - 1) + [False]
        for segment in found[:-1]:
            check_segment(box.name, segment, segment.publications[-1]["offset"], progress)
        check_segment(box.name, found[-1], TOTAL, progress)
    assert len(segments(joiners["short-then-recover-b"], RACE, starts["short-then-recover-b"])) == 2
    print(f"channel offset when the joiners' subscribe was handled: {joined_at} (of {TOTAL})")


# ---------------------------------------------------------------- presence across processes


async def test_join_and_leave_are_per_user_across_processes(servers, ws, new_user, tokens):
    """A on server 1 sees B join once (first tab on server 2), no join for a second tab, no leave
    for closing one tab, `leave` when the last one unsubscribes; `presence` agrees on both servers."""
    a, b = await servers(2, REALTIME_PRESENCE_GRACE=0.5, **CHANNEL_ENV)
    ann, bob = await new_user("ann"), await new_user("bob")
    room = "public:room1"
    ann_a = await inbox(ws, a, (await tokens(ann))[0], "ann-a")
    await subscribe(ann_a, room)
    await ann_a.wait_frame({"type": "join", "channel": room, "user": {"id": ann.pk, "username": "ann"}})

    bob_b = await inbox(ws, b, (await tokens(bob))[0], "bob-b")
    await subscribe(bob_b, room)
    joined = await ann_a.wait_frame({"type": "join", "channel": room, "user": {"id": bob.pk, "username": "bob"}})
    assert joined == {"type": "join", "channel": room, "user": {"id": bob.pk, "username": "bob"}}

    # A second tab on server 1: no second join. The tab's own publication, sent after its
    # subscribe was done, is the marker: any join would have been announced before it.
    bob_a = await inbox(ws, a, (await tokens(bob))[0], "bob-a")
    await subscribe(bob_a, room)
    await bob_a.request({"type": "publish", "channel": room, "data": {"marker": "second tab"}})
    for box in (ann_a, bob_b):
        await box.wait_frame({"type": "message", "channel": room, "data": {"marker": "second tab"}})
    assert len(presence_pushes(ann_a, "join", room, "bob")) == 1, ann_a.frames
    assert len(presence_pushes(bob_b, "join", room, "bob")) == 1, bob_b.frames  # its own, at its subscribe
    for box in (ann_a, bob_b):  # asked on server 1 and on server 2
        assert await presence_of(box, room) == {"ann": 1, "bob": 2}, box.name

    # Closing one tab: its entry is kept for PRESENCE_GRACE, then pruned: bob still has one.
    await bob_a.client.close()
    await poll_presence(ann_a, room, {"ann": 1, "bob": 1})
    await bob_b.request({"type": "publish", "channel": room, "data": {"marker": "one tab closed"}})
    await ann_a.wait_frame({"type": "message", "channel": room, "data": {"marker": "one tab closed"}})
    assert presence_pushes(ann_a, "leave", room, "bob") == [], ann_a.frames

    mark = len(ann_a.frames)
    await unsubscribe(bob_b, room)
    left = await ann_a.wait_frame({"type": "leave", "channel": room}, WAIT, start=mark)
    assert left == {"type": "leave", "channel": room, "user": {"id": bob.pk, "username": "bob"}}
    ann_b = await inbox(ws, b, (await tokens(ann))[0], "ann-b")
    for box in (ann_a, ann_b):
        assert await presence_of(box, room) == {"ann": 1}, box.name


async def ann_on_a_sees_bob_join_on_b(a, b, room, ws, new_user, tokens):
    """ann subscribed on server `a`, bob on server `b`, and ann has seen bob's `join`.

    Returns ann's inbox, bob, and the index of ann's frames from which later pushes count.
    """
    ann, bob = await new_user("ann"), await new_user("bob")
    ann_a = await inbox(ws, a, (await tokens(ann))[0], "ann-a")
    await subscribe(ann_a, room)
    bob_b = await inbox(ws, b, (await tokens(bob))[0], "bob-b")
    await subscribe(bob_b, room)
    await ann_a.wait_frame({"type": "join", "channel": room, "user": {"id": bob.pk, "username": "bob"}})
    return ann_a, bob, len(ann_a.frames)


async def test_presence_of_a_killed_process_lapses_with_leave(servers, ws, new_user, tokens, timings):
    """B subscribed on server 2, kill -9 server 2: A on server 1 gets `leave` for B within a few beats."""
    a, b = await servers(2, **FAST_NODES, **CHANNEL_ENV)
    room = "public:room1"
    ann_a, bob, mark = await ann_on_a_sees_bob_join_on_b(a, b, room, ws, new_user, tokens)

    b.kill9()
    killed = time.monotonic()
    left = await ann_a.wait_frame({"type": "leave", "channel": room}, WAIT, start=mark)
    timings("kill -9 of server 2 -> leave on server 1", time.monotonic() - killed)
    assert left == {"type": "leave", "channel": room, "user": {"id": bob.pk, "username": "bob"}}
    assert await presence_of(ann_a, room) == {"ann": 1}
    assert presence_pushes(ann_a, "leave", room, "ann") == []


async def test_presence_request_that_prunes_a_dead_process_entry_still_announces_leave(launch, ws, new_user, tokens):
    """Whoever prunes a lapsed entry announces the `leave`, a `presence` read included.

    Server 1 beats slowly (NODE_HEARTBEAT 30 s), so its beat does not prune during
    the test; server 2 beats fast, so its entries lapse 0.9 s after it dies. A
    `presence` request on server 1 then finds bob's entry lapsed and prunes it; the
    users it removes have left and must be announced, or no one ever will be
    (docs/design.md: "pruned with `leave` by the next presence operation or beat").
    """
    a = launch(REALTIME_NODE_HEARTBEAT=30, **CHANNEL_ENV)
    b = launch(**FAST_NODES, **CHANNEL_ENV)
    await asyncio.gather(a.wait_ready(), b.wait_ready())
    room = "public:lobby"
    ann_a, bob, mark = await ann_on_a_sees_bob_join_on_b(a, b, room, ws, new_user, tokens)

    b.kill9()
    await poll_presence(ann_a, room, {"ann": 1})  # bob's entry lapsed and was pruned by this read
    await ann_a.wait_frame({"type": "leave", "channel": room}, 5.0, start=mark)


# ---------------------------------------------------------------- recovery


async def test_dropped_subscriber_recovers_exactly_the_missed_publications(servers, ws, new_user, tokens):
    """Publisher on server 1, subscriber on server 2; the subscriber's connection drops and it comes back
    with `recover` from its last offset while publishing goes on: exactly the missed ones, then live."""
    a, b = await servers(2, **CHANNEL_ENV)
    ann, bob = await new_user("ann"), await new_user("bob")
    channel, total = "public:feed", 150
    publisher = await inbox(ws, a, (await tokens(ann))[0], "publisher")
    first = await inbox(ws, b, (await tokens(bob))[0], "before-drop")
    reply = await subscribe(first, channel)
    starts = {first.name: {reply["id"]: reply["offset"]}}
    progress = Progress()
    dropped, resubscribed = progress.gate(50), progress.gate(100)
    again_box: list[Inbox] = []

    async def drop_and_recover() -> None:
        """Drop the subscriber's TCP connection, reconnect and subscribe again with `recover`."""
        await progress.reached(50)
        first.client.ws.transport.abort()  # the TCP connection is gone, no close handshake
        await first.wait_for(lambda: first.closed is not None, WAIT, "the drop")
        dropped.set()
        last = first.last_offset.get(channel, reply["offset"])
        again = await inbox(ws, b, (await tokens(bob))[0], "after-drop")
        again_box.append(again)
        await progress.reached(80)  # publishing went on meanwhile: there is something to recover
        recover = {"epoch": reply["epoch"], "offset": last}
        future = await again.start({"type": "subscribe", "channel": channel, "recover": recover})
        resubscribed.set()
        async with asyncio.timeout(WAIT):
            recovered = await future
        assert recovered["type"] == "subscribed" and recovered["recovered"] is True, recovered
        assert recovered["publications"][0]["offset"] == last + 1, recovered["publications"][:1]
        starts[again.name] = {recovered["id"]: last}

    await asyncio.gather(publish_from_socket(publisher, channel, "ann", total, progress), drop_and_recover())
    assert sorted(progress.published) == list(range(1, total + 1))
    (again,) = again_box
    await again.wait_for(lambda: again.last_offset.get(channel, 0) >= total, WAIT, f"offset {total}")
    await again.request({"type": "ping"})
    (before,) = segments(first, channel, starts[first.name])
    (after,) = segments(again, channel, starts[again.name])
    check_segment(first.name, before, first.last_offset.get(channel, reply["offset"]), progress)
    check_segment(again.name, after, total, progress)
    assert after.after == (before.publications[-1]["offset"] if before.publications else reply["offset"])


# ---------------------------------------------------------------- rooms


async def remove_member(room: Room, user) -> None:
    await room.members.aremove(user)


async def delete_memberships(room: Room, user) -> None:
    """A queryset delete on the through model (no `m2m_changed`)."""
    await Room.members.through.objects.filter(user=user).adelete()


@pytest.mark.parametrize("removal", [remove_member, delete_memberships])
async def test_removing_a_room_member_with_the_orm_ends_the_subscription_on_another_process(
    servers, ws, new_user, tokens, redis_layer, removal
):
    """The member's socket on server 2 gets `unsubscribed` reason `removed`, and may no longer publish
    or subscribe there; another member's subscription goes on."""
    a, b = await servers(2, **CHANNEL_ENV)
    ann, bob = await new_user("ann"), await new_user("bob")
    room = await Room.objects.acreate(slug="kitchen", name="Kitchen")
    await room.members.aadd(ann, bob)
    channel = "room:kitchen"
    ann_a = await inbox(ws, a, (await tokens(ann))[0], "ann-a")
    bob_b = await inbox(ws, b, (await tokens(bob))[0], "bob-b")
    for box in (ann_a, bob_b):
        await subscribe(box, channel)
    reply = await bob_b.request({"type": "publish", "channel": channel, "data": {"text": "before"}})
    assert reply["type"] == "published", reply  # bob's permission to publish is now remembered
    await bob_b.wait_frame({"type": "message", "channel": channel, "offset": reply["offset"]})
    mark = len(bob_b.frames)

    await removal(room, bob)
    ended = await bob_b.wait_frame({"type": "unsubscribed", "channel": channel}, WAIT, start=mark)
    assert ended == {"type": "unsubscribed", "channel": channel, "reason": "removed"}
    denied = await bob_b.request({"type": "publish", "channel": channel, "data": {"text": "after"}})
    assert (denied["type"], denied["code"]) == ("error", "permission_denied"), denied
    denied = await bob_b.request({"type": "subscribe", "channel": channel})
    assert (denied["type"], denied["code"]) == ("error", "permission_denied"), denied

    reply = await ann_a.request({"type": "publish", "channel": channel, "data": {"text": "still here"}})
    assert reply["type"] == "published", reply
    await ann_a.wait_frame({"type": "message", "channel": channel, "offset": reply["offset"]})
    assert bob_b.of_type("message", channel, mark) == []
