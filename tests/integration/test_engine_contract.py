"""One contract, two backends: every engine test runs on the in-memory and the Redis engine."""

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from realtime.core.frames import publication_parts
from realtime.engine.base import ADMITTED, AT_LIMIT, OVER_RATE, OverQuota, Quota, SessionWrite, TakenSession
from realtime.engine.memory import MemoryEngine
from realtime.engine.redis import RedisEngine
from tests.integration.lossy import lose_history

pytestmark = pytest.mark.integration

USER = {"id": 7, "username": "ann"}
BOB = {"id": 8, "username": "bob"}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def engine(bare_engine):
    """The contract holds for both backends, driven directly (no sockets)."""
    return bare_engine


async def members(engine, channel):
    """The members of a channel, as a presence read gives them (pruning lapsed entries)."""
    return (await engine.presence_snapshot(channel))[1]


async def publish(engine, channel, data, *, size=100, ttl=3600, user=7, max_bytes=0, quota=None):
    head, tail = publication_parts(channel, data, user, 1234)
    return await engine.publish(channel, head, tail, size=size, ttl=ttl, max_bytes=max_bytes, quota=quota)


async def test_offsets_grow_by_one_under_one_epoch(engine):
    first = await publish(engine, "public:a", {"n": 1})
    second = await publish(engine, "public:a", {"n": 2})
    assert (first.offset, second.offset) == (1, 2)
    assert first.epoch == second.epoch
    assert json.loads(second.text) == {
        "channel": "public:a",
        "epoch": first.epoch,
        "offset": 2,
        "data": {"n": 2},
        "user": 7,
        "ts": 1234,
    }
    other = await publish(engine, "public:b", "x", user=None)
    assert other.offset == 1 and json.loads(other.text)["user"] is None


async def test_position_before_any_publication(engine):
    position = await engine.position("public:new", ttl=60)
    assert position.offset == 0 and position.epoch
    assert (await engine.position("public:new", ttl=60)).epoch == position.epoch
    assert (await publish(engine, "public:new", 1)).epoch == position.epoch


async def test_since_returns_what_follows_oldest_first(engine):
    pubs = [await publish(engine, "public:a", i) for i in range(5)]
    epoch = pubs[0].epoch
    stream = await engine.since("public:a", epoch, 2, ttl=3600)
    assert stream.complete and stream.offset == 5 and stream.epoch == epoch
    assert [json.loads(t)["data"] for t in stream.publications] == [2, 3, 4]
    limited = await engine.since("public:a", epoch, 0, ttl=3600, limit=2)
    assert [json.loads(t)["offset"] for t in limited.publications] == [1, 2]
    assert (await engine.since("public:a", epoch, 5, ttl=3600)).publications == []


async def test_since_another_epoch_or_the_future_is_incomplete(engine):
    await publish(engine, "public:a", 1)
    wrong = await engine.since("public:a", "not-the-epoch", 0, ttl=3600)
    assert not wrong.complete and wrong.publications == [] and wrong.offset == 1
    position = await engine.position("public:a", ttl=3600)
    future = await engine.since("public:a", position.epoch, 9, ttl=3600)
    assert not future.complete


async def test_history_is_trimmed_to_its_size(engine):
    for i in range(10):
        await publish(engine, "public:a", i, size=3)
    position = await engine.position("public:a", ttl=3600)
    latest = await engine.latest("public:a", 100, ttl=3600)
    assert [json.loads(t)["offset"] for t in latest.publications] == [8, 9, 10]
    trimmed = await engine.since("public:a", position.epoch, 2, ttl=3600)
    assert not trimmed.complete
    assert [json.loads(t)["offset"] for t in trimmed.publications] == [8, 9, 10]
    assert (await engine.since("public:a", position.epoch, 7, ttl=3600)).complete


async def test_latest_limit(engine):
    for i in range(5):
        await publish(engine, "public:a", i)
    latest = await engine.latest("public:a", 2, ttl=3600)
    assert [json.loads(t)["offset"] for t in latest.publications] == [4, 5]
    assert latest.offset == 5
    assert (await engine.latest("public:a", 0, ttl=3600)).publications == []


def size(published):
    """The bytes a publication counts for toward `max_bytes`: its text in UTF-8."""
    return len(published.text.encode())


def offsets(stream):
    return [json.loads(t)["offset"] for t in stream.publications]


async def test_since_pages_forward_under_a_byte_bound(engine):
    pubs = [await publish(engine, "public:a", "x" * 200) for _ in range(10)]
    epoch, bound = pubs[0].epoch, sum(size(p) for p in pubs[:3]) + size(pubs[3]) // 2
    seen, position = [], 0
    while position < 10:
        page = await engine.since("public:a", epoch, position, ttl=3600, max_bytes=bound)
        assert sum(len(t.encode()) for t in page.publications) <= bound
        assert page.complete is (position == 9)  # a page cut short is not all there is
        seen += offsets(page)
        position = offsets(page)[-1]
    assert seen == list(range(1, 11))  # every publication exactly once, in order
    assert offsets(await engine.since("public:a", epoch, 0, ttl=3600, max_bytes=bound)) == [1, 2, 3]
    whole = await engine.since("public:a", epoch, 0, ttl=3600, max_bytes=sum(size(p) for p in pubs))
    assert whole.complete and offsets(whole) == list(range(1, 11))
    limited = await engine.since("public:a", epoch, 0, ttl=3600, limit=2, max_bytes=bound)
    assert offsets(limited) == [1, 2] and not limited.complete


async def test_since_newest_keeps_the_newest_that_fit(engine):
    pubs = [await publish(engine, "public:a", "x" * 200) for _ in range(10)]
    epoch, bound = pubs[0].epoch, sum(size(p) for p in pubs[-3:]) + 10
    replay = await engine.since("public:a", epoch, 2, ttl=3600, max_bytes=bound, newest=True)
    assert offsets(replay) == [8, 9, 10] and not replay.complete and replay.offset == 10
    fits = await engine.since("public:a", epoch, 7, ttl=3600, max_bytes=bound, newest=True)
    assert offsets(fits) == [8, 9, 10] and fits.complete


async def test_a_replay_from_another_epoch_holds_the_current_epoch_from_its_first(engine):
    """`newest` (a `recover` replay) from a lost epoch: the new epoch's publications, all kept or the newest
    that fit, and never complete (PROTOCOL §4). A page read (`history`) from there stays empty."""
    old = await publish(engine, "public:a", "before")
    await lose_history(engine, "public:a")
    pubs = [await publish(engine, "public:a", "x" * 200, size=4) for _ in range(6)]
    replay = await engine.since("public:a", old.epoch, old.offset, ttl=3600, newest=True)
    assert (replay.epoch, replay.offset, replay.complete) == (pubs[0].epoch, 6, False)
    assert offsets(replay) == [3, 4, 5, 6]  # as far as history holds them
    bound = sum(size(p) for p in pubs[-2:]) + 10
    fits = await engine.since("public:a", old.epoch, old.offset, ttl=3600, max_bytes=bound, newest=True)
    assert offsets(fits) == [5, 6] and not fits.complete
    assert (await engine.since("public:a", old.epoch, old.offset, ttl=3600)).publications == []


async def test_latest_keeps_the_newest_that_fit(engine):
    pubs = [await publish(engine, "public:a", "x" * 200) for _ in range(10)]
    bound = sum(size(p) for p in pubs[-3:]) + 10
    assert offsets(await engine.latest("public:a", 100, ttl=3600, max_bytes=bound)) == [8, 9, 10]
    assert offsets(await engine.latest("public:a", 2, ttl=3600, max_bytes=bound)) == [9, 10]


async def test_a_publication_over_the_byte_bound_comes_alone(engine):
    big = await publish(engine, "public:a", "x" * 1000)
    await publish(engine, "public:a", 1)
    last = await publish(engine, "public:a", "y" * 1000)
    page = await engine.since("public:a", big.epoch, 0, ttl=3600, max_bytes=100)
    assert offsets(page) == [1] and not page.complete  # paging still moves forward
    assert offsets(await engine.since("public:a", big.epoch, 1, ttl=3600, max_bytes=100)) == [2]
    assert offsets(await engine.latest("public:a", 10, ttl=3600, max_bytes=100)) == [last.offset]


async def test_the_byte_bound_counts_utf8_bytes(engine):
    pubs = [await publish(engine, "public:a", "é" * 100) for _ in range(3)]
    characters = sum(len(p.text) for p in pubs[:2])  # two fit by characters, not by bytes
    page = await engine.since("public:a", pubs[0].epoch, 0, ttl=3600, max_bytes=characters + 10)
    assert offsets(page) == [1]


async def test_a_trimmed_history_is_bounded_too(engine):
    pubs = [await publish(engine, "public:a", "x" * 200, size=5) for _ in range(10)]
    bound = sum(size(p) for p in pubs[-2:]) + 10
    page = await engine.since("public:a", pubs[0].epoch, 2, ttl=3600, max_bytes=bound)
    assert offsets(page) == [6, 7] and not page.complete
    replay = await engine.since("public:a", pubs[0].epoch, 2, ttl=3600, max_bytes=bound, newest=True)
    assert offsets(replay) == [9, 10] and not replay.complete


async def test_history_is_trimmed_to_its_bytes(engine):
    """Oldest first, until what is kept fits `max_bytes` of UTF-8 (2-byte characters: bytes, not characters)."""
    bound = 1000
    pubs = [await publish(engine, "public:a", "é" * 150, max_bytes=bound) for _ in range(10)]
    kept, total = [], 0
    for published in reversed(pubs):  # the newest that fit, as the engine must keep them
        if total + size(published) > bound:
            break
        kept.insert(0, published.offset)
        total += size(published)
    assert len(kept) == 2  # 330 bytes each (165 characters): three would fit if characters were counted
    latest = await engine.latest("public:a", 100, ttl=3600)
    assert offsets(latest) == kept == [9, 10]
    trimmed = await engine.since("public:a", pubs[0].epoch, 1, ttl=3600)
    assert offsets(trimmed) == [9, 10] and not trimmed.complete
    assert (await engine.since("public:a", pubs[0].epoch, 8, ttl=3600)).complete


async def test_the_newest_publication_stays_however_large(engine):
    await publish(engine, "public:a", "small", max_bytes=500)
    large = await publish(engine, "public:a", "x" * 2000, max_bytes=500)
    assert (await engine.latest("public:a", 100, ttl=3600)).publications == [large.text]
    after = await publish(engine, "public:a", "small again", max_bytes=500)
    assert offsets(await engine.latest("public:a", 100, ttl=3600)) == [after.offset]  # the large one went


async def test_count_and_bytes_bound_history_together(engine):
    for n in range(6):
        await publish(engine, "public:a", n, size=3, max_bytes=100_000)  # the count binds
    assert offsets(await engine.latest("public:a", 100, ttl=3600)) == [4, 5, 6]
    small = [await publish(engine, "public:b", "x" * 100, size=100, max_bytes=400) for _ in range(6)]
    assert offsets(await engine.latest("public:b", 100, ttl=3600)) == [p.offset for p in small[-2:]]  # the bytes


async def test_history_bytes_are_counted_afresh_in_a_new_epoch(engine):
    """A lost history takes its byte count with it: the new epoch keeps up to the bound again."""
    for _ in range(3):
        await publish(engine, "public:a", "x" * 300, max_bytes=1000)
    await lose_history(engine, "public:a")
    pubs = [await publish(engine, "public:a", "x" * 300, max_bytes=1000) for _ in range(2)]
    assert offsets(await engine.latest("public:a", 100, ttl=3600)) == [1, 2] and pubs[0].offset == 1


async def test_redis_counts_a_history_stored_before_it_counted_bytes(redis_url, redis_prefix):
    """A list written by an older server (no byte count in the stream's hash) is counted once, then trimmed."""
    engine = RedisEngine(redis_url, redis_prefix)
    try:
        for _ in range(5):
            await publish(engine, "public:old", "x" * 300)
        await engine.redis.hdel(engine.key("m", "public:old"), "bytes")  # as an older server left it
        newest = await publish(engine, "public:old", "x" * 300, max_bytes=1200)  # ~370 bytes each: 3 fit
        assert offsets(await engine.latest("public:old", 100, ttl=3600)) == [4, 5, 6] and newest.offset == 6
    finally:
        await engine.close()


# ---------------------------------------------------------------- the publish quota (PUBLISH_BYTES_PER_SECOND)

RATE = 1000  # bytes per second; a publication of 20 times that passes from a full quota and owes 19 s


async def test_a_publish_over_the_quota_is_refused_and_not_stored(engine):
    ann = Quota("7", RATE)
    big = await publish(engine, "public:q", "x" * (20 * RATE), quota=ann)
    with pytest.raises(OverQuota) as refused:
        await publish(engine, "public:q", "small", quota=ann)
    assert refused.value.wait > 15  # what the big one owes: nothing else fits for a while
    with pytest.raises(OverQuota):
        await publish(engine, "public:other", "small", quota=ann)  # per user, not per channel
    assert offsets(await engine.latest("public:q", 100, ttl=3600)) == [big.offset]  # refused: not stored,
    assert (await publish(engine, "public:q", "server")).offset == 2  # and no offset taken
    assert (await publish(engine, "public:q", "bob", quota=Quota("8", RATE))).offset == 3  # bob's own quota


async def test_a_publication_within_the_quota_passes(engine):
    ann = Quota("7", RATE)
    first = await publish(engine, "public:q", "x" * 300, quota=ann)
    second = await publish(engine, "public:q", "x" * 300, quota=ann)  # ~370 bytes each: both in a second's worth
    assert (first.offset, second.offset) == (1, 2)
    with pytest.raises(OverQuota) as refused:
        await publish(engine, "public:q", "x" * 300, quota=ann)
    assert 0 < refused.value.wait <= 1  # under a second's worth: it fits within a second


async def test_two_processes_share_one_users_quota_in_redis(redis_url, redis_prefix):
    """The quota lives in Redis: what one process (engine, connection pool) spent, the other cannot."""
    first, second = RedisEngine(redis_url, redis_prefix), RedisEngine(redis_url, redis_prefix)
    try:
        await publish(first, "public:a", "x" * (20 * RATE), quota=Quota("7", RATE))
        with pytest.raises(OverQuota):
            await publish(second, "public:b", "small", quota=Quota("7", RATE))
        assert 0 < await first.redis.pttl(first.key("q", "7")) <= 21_000  # gone once it has refilled
    finally:
        await first.close()
        await second.close()


async def test_no_history_still_counts_offsets(engine):
    await publish(engine, "public:a", 1, size=0)
    second = await publish(engine, "public:a", 2, size=0)
    assert second.offset == 2
    assert (await engine.latest("public:a", 10, ttl=3600)).publications == []


async def test_lost_history_means_a_new_epoch(engine):
    old = await publish(engine, "public:a", 1)
    await lose_history(engine, "public:a")
    new = await publish(engine, "public:a", 2)
    assert new.epoch != old.epoch and new.offset == 1
    stream = await engine.since("public:a", old.epoch, 1, ttl=3600)
    assert not stream.complete and stream.epoch == new.epoch


async def test_history_expires_after_its_ttl(redis_url, redis_prefix):
    clock = Clock()
    engine = MemoryEngine(clock=clock)
    old = await publish(engine, "public:a", 1, ttl=10)
    clock.now += 11
    assert (await engine.position("public:a", ttl=10)).epoch != old.epoch
    # Redis: the keys carry the TTL
    redis_engine = RedisEngine(redis_url, redis_prefix)
    await publish(redis_engine, "public:a", 1, ttl=10)
    assert 0 < await redis_engine.redis.ttl(redis_engine.key("h", "public:a")) <= 10
    assert 0 < await redis_engine.redis.ttl(redis_engine.key("m", "public:a")) <= 10
    await redis_engine.close()


# ---------------------------------------------------------------- presence


async def test_presence_counts_connections_per_user(engine):
    assert (await engine.presence_add("public:a", "s1", USER, ttl=30)).joined == [USER]
    assert (await engine.presence_add("public:a", "s2", USER, ttl=30)).joined == []
    assert (await engine.presence_add("public:a", "s3", BOB, ttl=30)).joined == [BOB]
    assert (await engine.presence_add("public:a", "s1", USER, ttl=30)).joined == []  # the same session again
    assert await members(engine, "public:a") == [{**USER, "connections": 2}, {**BOB, "connections": 1}]
    assert (await engine.presence_remove("public:a", "s1")).left == []
    assert (await engine.presence_remove("public:a", "s2")).left == [USER]
    assert (await engine.presence_remove("public:a", "s2")).left == []  # already gone
    assert await members(engine, "public:a") == [{**BOB, "connections": 1}]
    assert await members(engine, "public:empty") == []


async def test_presence_lapses_unless_touched(engine):
    await engine.presence_add("public:a", "s1", USER, ttl=30)
    await engine.presence_add("public:a", "s2", BOB, ttl=30)
    await engine.presence_expire("public:a", "s1", after=0)
    await engine.presence_touch({"public:a": ["s2"], "public:none": ["x"]}, ttl=30)
    change = await engine.presence_prune("public:a")
    assert change.left == [USER]
    assert await members(engine, "public:a") == [{**BOB, "connections": 1}]


async def test_a_lapsed_entry_added_again_joins_again(engine):
    await engine.presence_add("public:a", "s1", USER, ttl=30)
    await engine.presence_expire("public:a", "s1", after=0)
    change = await engine.presence_add("public:a", "s2", USER, ttl=30)
    assert change.left == [USER] and change.joined == [USER]


async def test_expiring_an_absent_session_does_nothing(engine):
    await engine.presence_expire("public:a", "ghost", after=0)
    await engine.presence_touch({}, ttl=30)
    assert await members(engine, "public:a") == []


async def test_members_are_ordered_by_username(engine):
    await engine.presence_add("public:a", "s1", BOB, ttl=30)
    await engine.presence_add("public:a", "s2", USER, ttl=30)
    assert [m["username"] for m in await members(engine, "public:a")] == ["ann", "bob"]


async def test_a_snapshot_prunes_and_lists_in_one_step(engine):
    await engine.presence_add("public:a", "s1", USER, ttl=30)
    await engine.presence_add("public:a", "s2", BOB, ttl=30)
    await engine.presence_expire("public:a", "s1", after=0)
    left, members = await engine.presence_snapshot("public:a")
    assert left.left == [USER] and left.joined == []
    assert members == [{**BOB, "connections": 1}]
    left, members = await engine.presence_snapshot("public:a")
    assert left.left == [] and members == [{**BOB, "connections": 1}]
    assert await engine.presence_snapshot("public:none") == (left, [])


# ---------------------------------------------------------------- session records (resume)


def write(owner, changes, session="s1", user="7"):
    return SessionWrite(session, owner, user, changes)


async def test_a_session_record_is_taken_over_with_its_subscriptions(engine):
    assert await engine.session_write([write("sock-a", {"public:a": ["e1", 3], "public:b": ["e2", 0]})], ttl=30) == [
        True
    ]
    assert await engine.session_write([write("sock-a", {"public:a": ["e1", 5], "public:b": None})], ttl=30) == [True]
    taken = await engine.session_take("s1", "sock-b", "7", ttl=30)
    assert taken == TakenSession("sock-a", {"public:a": ["e1", 5]})
    # the record is the new socket's now, empty until it records its own subscriptions
    assert await engine.session_write([write("sock-a", {"public:c": ["e3", 1]})], ttl=30) == [False]
    assert await engine.session_write([write("sock-b", {"public:d": ["e4", 2]})], ttl=30) == [True]
    assert await engine.session_take("s1", "sock-c", "7", ttl=30) == TakenSession("sock-b", {"public:d": ["e4", 2]})


async def test_a_batch_of_session_writes_answers_each(engine):
    await engine.session_write([write("sock-a", {}, session="s1")], ttl=30)
    await engine.session_take("s1", "sock-z", "7", ttl=30)
    results = await engine.session_write(
        [write("sock-a", {"public:a": ["e", 1]}, session="s1"), write("sock-b", {"public:a": ["e", 1]}, session="s2")],
        ttl=30,
    )
    assert results == [False, True]
    assert await engine.session_write([], ttl=30) == []


async def test_another_user_cannot_take_a_session_and_uses_it_up(engine):
    await engine.session_write([write("sock-a", {"public:a": ["e1", 3]})], ttl=30)
    assert await engine.session_take("s1", "sock-b", "8", ttl=30) is None
    assert await engine.session_take("s1", "sock-b", "7", ttl=30) is None


async def test_a_session_record_lapses_after_its_ttl(engine):
    await engine.session_write([write("sock-a", {"public:a": ["e1", 3]})], ttl=5)
    if isinstance(engine, MemoryEngine):
        engine.clock = lambda: 10**9  # long after the ttl
    else:  # Redis expires the key itself: its ttl is what the engine set
        assert 4000 < await engine.redis.pttl(engine.key("s", "s1")) <= 5000
        await engine.redis.delete(engine.key("s", "s1"))
    assert await engine.session_take("s1", "sock-b", "7", ttl=30) is None
    assert await engine.session_take("unknown", "sock-b", "7", ttl=30) is None


async def test_only_the_owner_deletes_a_session(engine):
    await engine.session_write([write("sock-a", {"public:a": ["e1", 3]})], ttl=30)
    await engine.session_delete("s1", "sock-b")
    assert (await engine.session_take("s1", "sock-b", "7", ttl=30)).subscriptions == {"public:a": ["e1", 3]}
    await engine.session_delete("s1", "sock-b")
    assert await engine.session_take("s1", "sock-c", "7", ttl=30) is None


# ---------------------------------------------------------------- connection slots (MAX_CONNECTIONS_PER_USER)


async def test_slots_are_admitted_up_to_the_limit_per_user(engine):
    assert [await engine.slot_admit("7", f"sock-{i}", limit=2, ttl=30) for i in range(3)] == [True, True, False]
    assert await engine.slot_admit("8", "sock-9", limit=2, ttl=30)  # another user's slots are their own
    assert await engine.slot_admit("7", "sock-0", limit=2, ttl=30)  # a slot already held is renewed, not counted twice
    await engine.slot_release("7", "sock-0")
    await engine.slot_release("7", "sock-0")  # already gone
    assert await engine.slot_admit("7", "sock-2", limit=2, ttl=30)
    assert not await engine.slot_admit("7", "sock-3", limit=2, ttl=30)


async def test_connects_are_taken_from_a_bucket_per_user(engine):
    """CONNECT_BURST and CONNECT_RATE: the bucket starts full and refills at its rate (per second)."""
    assert [await engine.connect_take("7", rate=0.001, burst=3) for _ in range(4)] == [True, True, True, False]
    assert await engine.connect_take("8", rate=0.001, burst=3)  # another user's bucket is their own
    assert not await engine.connect_take("7", rate=0.001, burst=3)
    assert await engine.connect_take("7", rate=1e9, burst=3)  # refilled: any time at all passed, at this rate


async def test_admit_counts_the_connect_then_takes_a_slot_in_one_step(engine):
    """What a connect does (`realtime.sessions.slots.admit`): the rate first, then the limit."""
    admit = {"rate": 0.001, "burst": 3, "limit": 2, "ttl": 30}
    assert [await engine.admit("7", f"sock-{i}", **admit) for i in range(4)] == [
        ADMITTED,
        ADMITTED,
        AT_LIMIT,  # the connect counted all the same: a refused connect is a connect
        OVER_RATE,  # the bucket is empty: nothing else is looked at, and no slot is taken
    ]
    await engine.slot_release("7", "sock-0")
    assert not await engine.connect_take("7", rate=0.001, burst=3)  # the same bucket as connect_take's
    assert await engine.admit("7", "sock-9", **{**admit, "rate": 1e9}) == ADMITTED  # refilled; a slot free
    assert await engine.admit("8", "sock-1", **admit) == ADMITTED  # another user's are their own


async def test_a_slot_lapses_unless_touched(engine):
    await engine.slot_admit("7", "live", limit=2, ttl=30)
    await engine.slot_admit("7", "dead", limit=2, ttl=0)  # its process stopped renewing it: lapsed at once
    await engine.slot_touch({"7": ["live"], "8": ["nobody"]}, ttl=30)
    assert await engine.slot_admit("7", "new", limit=2, ttl=30)
    assert not await engine.slot_admit("7", "newer", limit=2, ttl=30)
    await engine.slot_touch({}, ttl=30)


async def test_touching_a_released_slot_does_not_bring_it_back(engine):
    await engine.slot_admit("7", "a", limit=1, ttl=30)
    await engine.slot_release("7", "a")
    await engine.slot_touch({"7": ["a"]}, ttl=30)  # a beat that raced with the close
    assert await engine.slot_admit("7", "b", limit=1, ttl=30)


async def test_slots_live_as_long_as_their_ttl(engine):
    await engine.slot_admit("7", "a", limit=1, ttl=5)
    if isinstance(engine, MemoryEngine):
        engine.clock = lambda: 10**9  # long after the ttl
    else:  # Redis keeps the key as long as its latest slot, by its own clock
        assert 4000 < await engine.redis.pttl(engine.key("c", "7")) <= 5000
        await engine.slot_touch({"7": ["a"]}, ttl=20)
        assert 19000 < await engine.redis.pttl(engine.key("c", "7")) <= 20000
        await engine.redis.zadd(engine.key("c", "7"), {"a": 0})  # as if 20 s had passed
    assert await engine.slot_admit("7", "b", limit=1, ttl=5)


async def test_admitting_is_atomic_across_processes(redis_url, redis_prefix):
    """Two processes (two engines, two connection pools) race for the last slots: exactly the limit get in."""
    first, second = RedisEngine(redis_url, redis_prefix), RedisEngine(redis_url, redis_prefix)
    try:
        engines = [first, second] * 20
        results = await asyncio.gather(
            *(engine.slot_admit("7", f"sock-{i}", limit=5, ttl=30) for i, engine in enumerate(engines))
        )
        assert results.count(True) == 5
        assert await first.redis.zcard(first.key("c", "7")) == 5
    finally:
        await first.close()
        await second.close()


async def test_presence_keys_of_a_dead_process_expire_in_redis(redis_url, redis_prefix):
    """Entries lapse by score; the keys too, so a channel nobody revisits leaves nothing behind."""
    engine = RedisEngine(redis_url, redis_prefix)
    await engine.presence_add("room:gone", "s1", USER, ttl=30)
    keys = [engine.key(kind, "room:gone") for kind in ("pz", "pi", "pc")]
    ttls = [await engine.redis.pttl(key) for key in keys]
    assert all(30_000 < ttl <= 60_000 for ttl in ttls), ttls  # the entry's lifetime, then as much again
    await engine.presence_touch({"room:gone": ["s1"]}, ttl=100)
    ttls = [await engine.redis.pttl(key) for key in keys]
    assert all(100_000 < ttl <= 200_000 for ttl in ttls), ttls
    await engine.close()


async def test_a_bounded_read_never_loads_the_whole_list_in_redis(redis_url, redis_prefix):
    """The byte bound holds inside Redis too: the read script asks for a chunk at a time and stops at the
    bound, so 40 readers of a large history hold 40 bounds, not 40 histories (MONITOR shows its LRANGEs)."""
    engine = RedisEngine(redis_url, redis_prefix)
    watcher = aioredis.Redis.from_url(redis_url)
    try:
        pubs = [await publish(engine, "public:big", "x" * 1000, size=300) for _ in range(300)]
        history, marker = engine.key("h", "public:big"), f"{redis_prefix}:done"
        async with watcher.monitor() as monitor:
            page = await engine.since("public:big", pubs[0].epoch, 0, ttl=3600, max_bytes=5000)
            replay = await engine.since("public:big", pubs[0].epoch, 0, ttl=3600, max_bytes=5000, newest=True)
            latest = await engine.latest("public:big", 300, ttl=3600, max_bytes=5000)
            await engine.redis.get(marker)
            asked = []
            while marker not in (command := (await monitor.next_command())["command"]):
                words = command.split()
                if words[:2] == ["LRANGE", history]:
                    asked.append(int(words[3]) - int(words[2]) + 1)
        assert offsets(page) == [1, 2, 3, 4] and offsets(replay) == offsets(latest) == [297, 298, 299, 300]
        assert len(asked) == 3 and max(asked) <= 32, asked  # one chunk each, never the 300 items
    finally:
        await watcher.aclose()
        await engine.close()
