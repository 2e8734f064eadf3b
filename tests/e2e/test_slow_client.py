"""A client that stops reading is cut off (4013) and the server's memory stays bounded.

One real daphne with a 64 KiB send queue per connection. The slow client is a
real WebSocket client whose TCP receive buffer is tiny (SO_RCVBUF set before
connecting, so the kernel does not autotune it to megabytes) and whose
`websockets` connection stops reading from the transport after one queued frame:
once it stops calling `recv`, nothing more leaves the server's buffers. 20 MB are
then published to its channel; the daphne process's resident memory must grow by
far less than that (the property under test is the bound, not a speed), and when
the client reads again it finds `disconnect` 4013 and the close 4013. A normal
subscriber on the same channel meanwhile gets every publication, in order.

The bound is in UTF-8 bytes: publications of 4-byte characters cut such a client off after as
many publications as ASCII ones of the same size in bytes (the cut-off read from /metrics).
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.models import Connection

from .client import Client, Inbox
from .servers import HOST, DaphneServer, proc_status_kib
from .test_metrics_e2e import TOKEN, scrape, value

pytestmark = [pytest.mark.e2e]

QUEUE_BYTES = 65536
# The publisher sends 20 MB as fast as the normal subscriber reads: lift the frame rate and the
# publish quota (PUBLISH_BYTES_PER_SECOND, 256 KiB/s); what is under test is the send queue's bound.
SLOW_ENV = {
    "REALTIME_SEND_QUEUE_BYTES": QUEUE_BYTES,
    "REALTIME_RATE": 10000,
    "REALTIME_RATE_BURST": 10000,
    "REALTIME_PUBLISH_BYTES_PER_SECOND": 1 << 30,
}
CHANNEL = "public:firehose"
COUNT = 2000
PAYLOAD = 10_000  # bytes of padding per publication: 2,000 x 10 KB = 20 MB published
LAG = 4  # publications the publisher may be ahead of the normal subscriber (it must keep up, not race)
RCVBUF = 4096
WAIT = 30.0  # a bound on waiting, never a measurement
SAMPLE_EVERY = 100  # publications between RSS samples


async def slow_client(server: DaphneServer, token: str) -> Client:
    """A WebSocket client that really stops reading when it stops calling `recv`.

    Its socket's receive buffer is set small before the connection is made, and its
    `websockets` connection pauses the transport once one frame is queued
    (`max_queue=1`), so unread frames back up into the server.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, server.port))
    ws = await connect(
        server.ws_url,
        sock=sock,
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
        close_timeout=2,
        proxy=None,
        compression=None,
        ping_interval=None,
        max_size=None,
        max_queue=1,
    )
    return Client(ws)


def rss_kib(pid: int) -> int:
    """The process's resident set size now, in KiB."""
    return proc_status_kib(pid, "VmRSS")


async def test_a_client_that_stops_reading_is_cut_off_and_memory_stays_bounded(servers, ws, new_user, tokens, timings):
    """2,000 publications of 10 KB to a channel whose subscriber stopped reading: RSS growth < 25 % of
    the 20 MB published, `disconnect` 4013 + close 4013 once it reads, and another subscriber gets all."""
    (server,) = await servers(1, **SLOW_ENV)
    slow_user, normal_user, publisher_user = [await new_user(name) for name in ("slow", "normal", "pub")]

    slow = await slow_client(server, (await tokens(slow_user))[0])
    welcome = await slow.recv_type("welcome")
    reply = await slow.request({"type": "subscribe", "id": "s", "channel": CHANNEL})
    assert reply["type"] == "subscribed" and reply["offset"] == 0, reply
    # From here on the slow client does not read.

    normal = Inbox(await ws(server, token=(await tokens(normal_user))[0], welcome=True), "normal")
    reply = await normal.request({"type": "subscribe", "channel": CHANNEL})
    assert reply["type"] == "subscribed" and reply["offset"] == 0, reply
    publisher = Inbox(await ws(server, token=(await tokens(publisher_user))[0], welcome=True), "publisher")

    before = rss_kib(server.pid)
    peak_before = proc_status_kib(server.pid, "VmHWM")
    samples = [before]
    published_bytes = 0
    pad = "x" * PAYLOAD
    started = time.monotonic()
    for n in range(1, COUNT + 1):
        # The normal subscriber must keep up: the publisher waits for it, never for the slow one.
        await normal.wait_for(lambda n=n: normal.last_offset.get(CHANNEL, 0) >= n - LAG, WAIT, f"offset {n - LAG}")
        await publisher.start({"type": "publish", "channel": CHANNEL, "data": {"n": n, "pad": pad}})
        published_bytes += PAYLOAD
        if n % SAMPLE_EVERY == 0:
            samples.append(rss_kib(server.pid))
    await normal.wait_for(lambda: normal.last_offset.get(CHANNEL, 0) >= COUNT, WAIT, f"offset {COUNT}")
    # The replies to the publisher travel apart from the fan-out: the last may come after the last message.
    await publisher.wait_for(lambda: len(publisher.of_type("published")) >= COUNT, WAIT, f"{COUNT} published")
    timings(f"{COUNT} x {PAYLOAD} B published and delivered to the normal subscriber", time.monotonic() - started)
    samples.append(rss_kib(server.pid))
    peak_after = proc_status_kib(server.pid, "VmHWM")

    growth = (max(samples) - before) * 1024
    print(
        f"daphne RSS before {before} KiB, max during {max(samples)} KiB, after {samples[-1]} KiB; "
        f"VmHWM {peak_before} -> {peak_after} KiB; growth {growth / 1e6:.2f} MB of {published_bytes / 1e6:.0f} MB"
    )
    assert growth < 0.25 * published_bytes, f"RSS grew {growth} bytes for {published_bytes} bytes published"

    # The normal subscriber: every publication, in order, once, intact.
    messages = normal.of_type("message", CHANNEL)
    assert [m["offset"] for m in messages] == list(range(1, COUNT + 1))
    assert all(m["data"] == {"n": m["offset"], "pad": pad} for m in messages)
    published = publisher.of_type("published")
    assert sorted(p["offset"] for p in published) == list(range(1, COUNT + 1)), publisher.frames[-3:]

    # The slow client reads again: what was already in the buffers, then `disconnect` 4013 and the close.
    offsets: list[int] = []
    deadline = time.monotonic() + WAIT
    while True:
        try:
            frame = await slow.recv(max(0.1, deadline - time.monotonic()))
        except (ConnectionClosed, OSError) as exc:
            pytest.fail(
                f"the connection ended without `disconnect` 4013 and a close frame ({exc!r}), after "
                f"{len(offsets)} messages (offsets {offsets[:1]}..{offsets[-1:]}): the slow client never learns "
                "why it was cut off"
            )
        if frame.get("type") == "message":
            offsets.append(frame["offset"])
            continue
        if frame.get("type") in ("ping", "join", "leave"):
            continue
        break
    assert frame == {"type": "disconnect", "code": 4013, "reason": "slow", "reconnect": True}, frame
    await slow.expect_closed(4013)
    print(f"the slow client got {len(offsets)} of {COUNT} publications before it was cut off")
    assert offsets == list(range(1, len(offsets) + 1)), offsets[:20]
    assert len(offsets) < COUNT
    with pytest.raises(ConnectionClosed):
        await slow.recv(1.0)

    # The server recorded why the socket ended.
    deadline = time.monotonic() + WAIT
    while (row := await Connection.objects.aget(session_id=welcome["session"])).closed_at is None:
        assert time.monotonic() < deadline, vars(row)
        await asyncio.sleep(0.05)
    assert (row.close_code, row.close_reason) == (4013, "slow")
    await normal.request({"type": "ping"})  # the normal subscriber is still served


WIDE = "\U0001f600"  # one character, four bytes in UTF-8
# 4,096 such characters: 16 KiB of UTF-8, 4 KiB as characters (and 48 KiB in the request, which the
# client's JSON escapes as \ud83d\ude00: under MAX_FRAME_BYTES).
WIDE_CHARS = 4096
WIDE_BYTES = 4 * WIDE_CHARS
WIDE_QUEUE = 1 << 20  # SEND_QUEUE_BYTES's default
WIDE_LIMIT = 800  # publications at most per run: 13 MB, far past any bound the queue could have
SCRAPE_EVERY = 4  # publications between reads of /metrics (both runs alike)


async def publications_until_cut_off(server, ws, tokens, users, channel: str, data: str) -> int:
    """Subscribe a client that stops reading and one that reads; publish `data` until the first is cut
    off (4013, counted in /metrics); how many publications that took."""
    slow_user, normal_user, publisher_user = users
    slow = await slow_client(server, (await tokens(slow_user))[0])
    await slow.recv_type("welcome")
    assert (await slow.request({"type": "subscribe", "id": "s", "channel": channel}))["type"] == "subscribed"
    normal = Inbox(await ws(server, token=(await tokens(normal_user))[0], welcome=True), "normal")
    assert (await normal.request({"type": "subscribe", "channel": channel}))["type"] == "subscribed"
    publisher = Inbox(await ws(server, token=(await tokens(publisher_user))[0], welcome=True), "publisher")
    cutoffs = value(await scrape(server), "realtime_slow_client_cutoffs_total")
    for n in range(1, WIDE_LIMIT + 1):
        reply = await publisher.request({"type": "publish", "channel": channel, "data": data})
        assert reply["type"] == "published", reply
        # Handed to both subscribers in one step: once the reader has it, the other's queue took it too.
        await normal.wait_for(lambda n=n: normal.last_offset.get(channel, 0) >= n, WAIT, f"offset {n}")
        if n % SCRAPE_EVERY == 0 and value(await scrape(server), "realtime_slow_client_cutoffs_total") > cutoffs:
            await slow.close()
            return n
    pytest.fail(f"{WIDE_LIMIT} publications of {len(data.encode())} bytes: the client that stopped reading is still on")


async def test_the_send_queue_is_bounded_in_utf8_bytes(servers, ws, new_user, tokens):
    """SEND_QUEUE_BYTES once counted characters, so with 4-byte characters a slow socket held 4 MiB
    against a 1 MiB bound. Publications of the same UTF-8 size, ASCII then 4-byte characters, must cut a
    client that stopped reading off after as many of them (what the kernel and daphne buffer is the same)."""
    # No heartbeat in the way: neither client answers pings, and the runs take a while on 2 cores.
    env = {**SLOW_ENV, "REALTIME_SEND_QUEUE_BYTES": WIDE_QUEUE, "REALTIME_HEARTBEAT": 600, "METRICS_TOKEN": TOKEN}
    (server,) = await servers(1, **env)
    users = [await new_user(name) for name in ("slow", "normal", "pub")]
    ascii_data, wide_data = "x" * (4 * WIDE_CHARS), WIDE * WIDE_CHARS
    assert len(ascii_data.encode()) == len(wide_data.encode()) == WIDE_BYTES
    ascii_runs = await publications_until_cut_off(server, ws, tokens, users, "public:ascii", ascii_data)
    wide_runs = await publications_until_cut_off(server, ws, tokens, users, "public:wide", wide_data)
    print(f"cut off after {ascii_runs} ASCII publications and {wide_runs} of 4-byte characters ({WIDE_BYTES} B each)")
    # Counted in characters the wide run would hold 4 MiB in the queue: about 190 publications more.
    assert wide_runs <= ascii_runs + WIDE_QUEUE // (2 * WIDE_BYTES), (ascii_runs, wide_runs)
