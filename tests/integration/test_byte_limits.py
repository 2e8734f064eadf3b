"""The byte limits of PROTOCOL sections 4 and 8, on the real engines: `PUBLISH_BYTES_PER_SECOND`
per user (all of the user's sockets and HTTP requests together), `MAX_REPLY_BYTES` on `history` and
on a recovery."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from realtime.engine import get_engine
from realtime.pubsub.publishing import publish
from realtime.support.conf import DEFAULT_NAMESPACES
from tests.conftest import make_tokens, override_realtime
from tests.integration.test_api import PUBLISH, assert_error, history_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KIB = 1024
RATE = 256 * KIB  # PUBLISH_BYTES_PER_SECOND's default: one second's worth may go at once


def size(publication: dict) -> int:
    """Its stored text's bytes (the text is compact JSON, so this serialisation is the same)."""
    return len(json.dumps(publication, separators=(",", ":"), ensure_ascii=False).encode())


def offsets(publications: list[dict]) -> list[int]:
    return [p["offset"] for p in publications]


async def replies(socket, ids) -> dict:
    """The reply to each request id in `ids` (pushes in between are set aside for `recv`)."""
    found, pushes = {}, []
    while len(found) < len(ids):
        frame = await socket.recv()
        if frame.get("id") in ids:
            found[frame["id"]] = frame
        elif frame["type"] != "ping":
            pushes.append(frame)
    socket.backlog.extend(pushes)
    return found


async def fill(channel: str, count: int, data_bytes: int):
    """`count` server publications of about `data_bytes` each; the last one's position."""
    for n in range(count):
        last = await publish(channel, {"n": n, "pad": "x" * data_bytes})
    return last


# ---------------------------------------------------------------- PUBLISH_BYTES_PER_SECOND


async def test_publishing_over_the_byte_rate_is_rate_limited_and_no_one_else_is(engine, login):
    """630 KiB sent at once: a second's worth is published, the excess gets `rate_limited` and is not
    published; the subscriber's stream is exactly what was published, and another socket may publish."""
    ann, bob, carol = await login("ann"), await login("bob"), await login("carol")
    await bob.request({"type": "subscribe", "id": 1, "channel": "public:lobby"})
    loop = asyncio.get_running_loop()
    started = loop.time()
    ids = list(range(100, 114))
    for rid in ids:  # 14 x 45 KiB, without waiting for the replies
        await ann.send({"type": "publish", "id": rid, "channel": "public:lobby", "data": "x" * (45 * KIB)})
    got = await replies(ann, ids)
    elapsed = loop.time() - started
    published = [got[rid] for rid in ids if got[rid]["type"] == "published"]
    limited = [got[rid] for rid in ids if got[rid]["type"] == "error"]
    assert {frame["code"] for frame in limited} == {"rate_limited"} and limited
    assert len(published) >= 5  # the burst: five of them are under one second's worth
    assert len(published) * 45 * KIB <= RATE + RATE * elapsed  # never more than the bucket let through
    stream = [await bob.recv_type("message") for _ in published]
    assert offsets(stream) == offsets(published) == list(range(1, len(published) + 1))
    history = await get_engine().latest("public:lobby", 100, ttl=3600)
    assert len(history.publications) == len(published)  # what was refused is not stored either
    other = await carol.request({"type": "publish", "id": 1, "channel": "public:lobby", "data": "x" * (45 * KIB)})
    assert other["type"] == "published"  # the quota is the user's, not the channel's
    assert (await bob.recv_type("message"))["offset"] == other["offset"]


@override_realtime({"PUBLISH_BYTES_PER_SECOND": 8 * KIB})
async def test_sockets_of_one_user_share_one_publish_quota(engine, login):
    """Ten sockets of one user, each far under PUBLISH_BYTES_PER_SECOND on its own, are refused
    together once the user's publications are past it; what was refused is not stored."""
    sockets = [await login("ann") for _ in range(10)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = [
        await socket.request({"type": "publish", "id": n, "channel": "public:q", "data": "x" * (7 * KIB)})
        for n, socket in enumerate(sockets)
    ]  # one publication of 7 KiB per socket: each socket alone is under the 8 KiB per second
    elapsed = loop.time() - started
    published = [reply for reply in got if reply["type"] == "published"]
    assert published and {reply["code"] for reply in got if reply["type"] == "error"} == {"rate_limited"}
    stored = (await get_engine().latest("public:q", 100, ttl=3600)).publications
    assert [json.loads(text)["offset"] for text in stored] == [reply["offset"] for reply in published]
    stored_bytes = sum(len(text.encode()) for text in stored)
    assert stored_bytes <= 8 * KIB * (1 + elapsed)  # the user's bucket: a second's worth, then the rate
    bob = await login("bob")  # another user has a quota of his own
    assert (await bob.request({"type": "publish", "id": 1, "channel": "public:q", "data": "hi"}))["type"] == "published"


@override_realtime({"PUBLISH_BYTES_PER_SECOND": 8 * KIB})
async def test_http_and_socket_publishes_share_the_users_quota(engine, connect, api_login, make_user):
    """A publication of 60 KiB passes from a full quota and leaves it owing seven seconds' worth: the
    same user's next publication is refused, over HTTP after a socket's and over a socket after HTTP's."""
    root = await sync_to_async(make_user)("root", is_staff=True)
    socket = await connect(token=(await sync_to_async(make_tokens)(root))[0])
    await socket.recv_type("welcome")
    api = await sync_to_async(api_login)(root)
    big = {"type": "publish", "id": 1, "channel": "public:a", "data": "x" * (60 * KIB)}
    assert (await socket.request(big))["type"] == "published"
    refused = await sync_to_async(api.post)(PUBLISH, {"channel": "public:a", "data": "hi"}, format="json")
    assert_error(refused, 429, "rate_limited")
    assert int(refused["Retry-After"]) > 5  # what the socket's publication owes

    root_too = await sync_to_async(make_user)("root2", is_staff=True)
    api = await sync_to_async(api_login)(root_too)
    response = await sync_to_async(api.post)(PUBLISH, {"channel": "public:a", "data": big["data"]}, format="json")
    assert response.status_code == 201
    other = await connect(token=(await sync_to_async(make_tokens)(root_too))[0])
    await other.recv_type("welcome")
    reply = await other.request({"type": "publish", "id": 2, "channel": "public:a", "data": "hi"})
    assert (reply["type"], reply["code"]) == ("error", "rate_limited")
    stored = (await get_engine().latest("public:a", 10, ttl=3600)).publications
    assert [json.loads(text)["offset"] for text in stored] == [1, 2]


@override_realtime({"PUBLISH_BYTES_PER_SECOND": 1024, "MAX_ERRORS": 2})
async def test_byte_rate_errors_count_toward_the_4008_close(engine, login):
    ann = await login("ann")
    for rid in range(4):
        await ann.send({"type": "publish", "id": rid, "channel": "public:a", "data": "x" * 900})
    got = await replies(ann, [0, 1, 2, 3])
    assert got[0]["type"] == "published"
    assert [got[rid]["code"] for rid in (1, 2, 3)] == ["rate_limited"] * 3
    frame = await ann.expect_disconnect(4008, "rate_limited")
    assert frame["reconnect"] is True


@override_realtime({"PUBLISH_BYTES_PER_SECOND": 1024})
def test_the_http_publish_api_has_a_byte_quota_per_user(api_login, make_user):
    root, admin = make_user("root", is_staff=True), make_user("admin", is_staff=True)
    body = {"channel": "public:a", "data": "x" * 900}
    assert api_login(root).post(PUBLISH, body, format="json").status_code == 201
    refused = api_login(root).post(PUBLISH, body, format="json")
    assert_error(refused, 429, "rate_limited")
    assert refused["Retry-After"] == "1"  # 900 of 1024 bytes per second come back within a second
    assert api_login(admin).post(PUBLISH, body, format="json").status_code == 201  # another user's own quota
    history = api_login(admin).get(history_url("public:a")).json()
    assert offsets(history["publications"]) == [1, 2]  # the refused one was not stored


# ---------------------------------------------------------------- MAX_REPLY_BYTES


@override_realtime({"NAMESPACES": {**DEFAULT_NAMESPACES, "public": {"history_bytes": 4 << 20}}})
async def test_history_pages_forward_under_max_reply_bytes(engine, login):
    """1.2 MiB of history (kept: the namespace keeps 4 MiB) comes back in pages of at most 1 MiB; paging
    forward gets each publication once."""
    last = await fill("public:big", 20, 60 * KIB)
    ann = await login()
    seen, position, pages = [], 0, 0
    while position < last.offset:
        since = {"epoch": last.epoch, "offset": position}
        reply = await ann.request({"type": "history", "id": pages, "channel": "public:big", "since": since})
        assert reply["offset"] == last.offset and reply["publications"]
        assert sum(size(p) for p in reply["publications"]) <= 1024 * KIB
        seen += offsets(reply["publications"])
        position, pages = seen[-1], pages + 1
    assert seen == list(range(1, 21)) and pages == 2
    newest = (await ann.request({"type": "history", "id": "n", "channel": "public:big"}))["publications"]
    assert sum(size(p) for p in newest) <= 1024 * KIB
    assert offsets(newest) == list(range(21 - len(newest), 21)) and len(newest) == 17  # the newest that fit


@override_realtime({"MAX_REPLY_BYTES": 4096})
def test_http_history_pages_forward_under_max_reply_bytes(engine, api_login, make_user):
    api = api_login(make_user("root", is_staff=True))
    for _ in range(30):
        assert api.post(PUBLISH, {"channel": "public:h", "data": "x" * 400}, format="json").status_code == 201
    body = api.get(history_url("public:h")).json()
    assert sum(size(p) for p in body["publications"]) <= 4096
    newest = offsets(body["publications"])
    assert newest == list(range(31 - len(newest), 31)) and len(newest) > 1
    seen, position = [], 0
    while position < 30:
        query = {"since_epoch": body["epoch"], "since_offset": position}
        page = api.get(history_url("public:h"), query).json()["publications"]
        assert page and sum(size(p) for p in page) <= 4096
        seen += offsets(page)
        position = seen[-1]
    assert seen == list(range(1, 31))


@override_realtime({"MAX_REPLY_BYTES": 4096})
async def test_a_recovery_over_max_reply_bytes_is_not_recovered(engine, login):
    """It carries the newest publications that fit, so the live stream follows them without a gap."""
    last = await fill("public:r", 30, 400)
    ann = await login()
    reply = await ann.request(
        {"type": "subscribe", "id": 1, "channel": "public:r", "recover": {"epoch": last.epoch, "offset": 2}}
    )
    assert reply["type"] == "subscribed" and reply["recovered"] is False and reply["offset"] == 30
    replayed = reply["publications"]
    assert sum(size(p) for p in replayed) <= 4096 and len(replayed) > 1
    assert offsets(replayed) == list(range(31 - len(replayed), 31))
    await publish("public:r", "live")
    assert (await ann.recv_type("message"))["offset"] == 31
    near = await login("bob")  # from a position whose replay fits: recovered
    reply = await near.request(
        {"type": "subscribe", "id": 1, "channel": "public:r", "recover": {"epoch": last.epoch, "offset": 28}}
    )
    assert reply["recovered"] is True and offsets(reply["publications"]) == [29, 30, 31]


@override_realtime({"MAX_REPLY_BYTES": KIB})
async def test_a_gap_over_max_reply_bytes_ends_the_subscription_and_a_small_one_is_filled(engine, login):
    """The fill of a gap is a reply too: bounded by MAX_REPLY_BYTES. Over it the subscription ends
    with `insufficient_state` (the client recovers, bounded as well); under it the gap is filled."""
    from tests.integration.lossy import lossy_fanout

    with lossy_fanout({1, 2, 5}):
        ann = await login()
        for channel in ("public:wide", "public:narrow"):
            await ann.request({"type": "subscribe", "id": channel, "channel": channel})
        await fill("public:wide", 3, 600)  # 1 and 2 lost: 1,200 bytes of gap, over the bound
        ended = await ann.recv_type("unsubscribed")
        assert ended == {"type": "unsubscribed", "channel": "public:wide", "reason": "insufficient_state"}
        for n in range(1, 7):  # 1, 2 and 5 lost: two gaps of small publications, each filled
            await publish("public:narrow", n)
        assert [(await ann.recv_type("message"))["data"] for _ in range(6)] == [1, 2, 3, 4, 5, 6]
