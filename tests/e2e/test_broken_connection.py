"""A connection that breaks without a close frame, and a resume without `positions` (PROTOCOL §3).

The client reaches server A through a loopback proxy (tests/e2e/proxy.py) that black-holes
the connection: A goes on writing publications into it, and none arrives. Three are
published from server B at once; A writes them all into the dead connection, and its beat
records the session's positions. A raw client then resumes the session on B without
`positions`: its replay must hold every publication after the last one the client received.
A cannot know which of its last frames got through, so it must not record them as delivered.
Duplicates are allowed; a miss is not.
"""

from __future__ import annotations

from typing import Any

import pytest

from realtime.models import Node

from .client import Client
from .proxy import BlackHoleProxy
from .rows import poll_queryset

pytestmark = [pytest.mark.e2e]

# A's heartbeat pings often (the client may acknowledge what it got), but waits long for an answer:
# A must not notice the break by itself within the test. Its beat records positions often.
SERVER_ENV = {"REALTIME_HEARTBEAT": 0.5, "REALTIME_HEARTBEAT_TIMEOUT": 120, "REALTIME_NODE_HEARTBEAT": 0.3}
CHANNEL = "public:broken"
WAIT = 20.0  # a bound on waiting for a frame, never a measurement


@pytest.fixture
async def proxy_to(ws):
    """`await proxy_to(server)`: a started `BlackHoleProxy` in front of it; closed before the clients."""
    started: list[BlackHoleProxy] = []

    async def start(server) -> BlackHoleProxy:
        started.append(await BlackHoleProxy(server.port).start())
        return started[-1]

    yield start
    for proxy in started:
        await proxy.close()


async def next_frame(client: Client, kind: str, *, answer_pings: bool) -> dict[str, Any]:
    """The next frame of `kind`, past presence pushes and heartbeat pings (answered when `answer_pings`)."""
    while True:
        frame = await client.recv(WAIT)
        if frame["type"] == "ping" and answer_pings:
            await client.send({"type": "pong"})
        if frame["type"] == kind:
            return frame
        assert frame["type"] in ("ping", "join", "leave"), frame


async def acknowledge(client: Client) -> None:
    """Tell the server the client has everything it sent so far: a pong to a ping sent after all of it.

    A first pong settles a ping that may still be unanswered (the server remembers the oldest); the
    ping after the synchronising request was queued after everything before it, and its pong covers it.
    """
    await client.send({"type": "pong"})
    await client.ping("settled")
    await next_frame(client, "ping", answer_pings=True)
    await client.ping("acknowledged")


async def beats(server, count: int) -> None:
    """Wait until the server's node beat has run `count` more times (its Node row's `last_seen` moved)."""
    seen: set = set()

    def moved(found: list[Node]) -> bool:
        seen.update(node.last_seen for node in found)
        return len(seen) > count

    await poll_queryset(moved, Node.objects.filter(name=server.node))


@pytest.mark.parametrize("acknowledged", [False, True], ids=["nothing-acknowledged", "first-acknowledged"])
async def test_a_resume_without_positions_replays_what_the_broken_connection_lost(
    servers, ws, proxy_to, new_user, tokens, acknowledged
):
    a, b = await servers(2, **SERVER_ENV)
    ann = await new_user("ann")
    access, _ = await tokens(ann)
    proxy = await proxy_to(a)
    client = await ws(proxy, token=access, welcome=True)
    session = client.welcome["session"]
    await client.send({"type": "subscribe", "id": "s", "channel": CHANNEL})
    assert (await next_frame(client, "subscribed", answer_pings=acknowledged))["offset"] == 0
    publisher = await ws(b, token=(await tokens(ann))[0], welcome=True)
    assert (await publisher.request({"type": "publish", "id": 0, "channel": CHANNEL, "data": 0}))["offset"] == 1
    received = (await next_frame(client, "message", answer_pings=acknowledged))["offset"]
    assert received == 1
    if acknowledged:
        await acknowledge(client)

    proxy.black_hole()
    for n in (1, 2, 3):  # at once
        await publisher.send({"type": "publish", "id": n, "channel": CHANNEL, "data": n})
    replies = [await publisher.recv_type("published") for _ in range(3)]
    last = max(reply["offset"] for reply in replies)
    assert last == 4, replies
    await proxy.wait_swallowed(lambda f: f.get("type") == "message" and f["offset"] == last, "last message")
    await beats(a, 2)  # a beat that began after A wrote them all has recorded the session

    again = await ws(b, token=(await tokens(ann))[0], query={"resume": session})
    welcome = await again.recv_type("welcome")
    assert welcome["resumed"] is True and welcome["session"] == session
    restored = await next_frame(again, "subscribed", answer_pings=False)
    offsets = [publication["offset"] for publication in restored["publications"]]
    assert set(range(received + 1, last + 1)) <= set(offsets), f"received {received}, replayed {offsets}"
    assert offsets == list(range(offsets[0], last + 1)), offsets  # in order, no gap, up to the newest
    # What the client acknowledged is not sent again; what it did not may be (a duplicate it drops).
    assert offsets[0] == (received + 1 if acknowledged else 1), offsets
