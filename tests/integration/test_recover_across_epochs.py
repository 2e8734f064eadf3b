"""PROTOCOL §4 (revised 2026-12-07): a `recover` across an epoch change carries the new epoch's publications.

When a channel's history was lost (Redis flushed, restarted, failed over) its epoch changes
and a client's position names nothing any more: `recovered` is false. What was published
since the loss must still reach the client, so the replay holds the current epoch's
publications from its first (as far as history and MAX_REPLY_BYTES hold them; over the
bound, the newest that fit, so that the live stream follows without a gap). The same holds
for the `subscribed` a resume pushes. On both backends; tests/e2e/test_redis_restart_recover.py
does it with a real Redis that is restarted.
"""

import pytest
from asgiref.sync import sync_to_async

from realtime.engine import get_engine
from realtime.pubsub.publishing import publish
from tests.conftest import make_tokens, override_realtime
from tests.integration.lossy import lose_history

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def datas(frame):
    return [publication["data"] for publication in frame["publications"]]


async def lost_then_published(channel: str, *datas_after):
    """A publication, then the channel's history lost, then `datas_after` published in the new epoch."""
    before = await publish(channel, "before the loss")
    await lose_history(get_engine(), channel)
    after = [await publish(channel, data) for data in datas_after]
    return before, after


async def test_recover_from_a_lost_epoch_holds_the_new_epoch_from_its_first(backend, login):
    ann = await login()
    before, after = await lost_then_published("public:lost", "a", "b")
    reply = await ann.request(
        {"type": "subscribe", "id": 1, "channel": "public:lost", "recover": {"epoch": before.epoch, "offset": 1}}
    )
    assert (reply["recovered"], reply["epoch"], reply["offset"]) == (False, after[0].epoch, 2)
    assert datas(reply) == ["a", "b"]
    assert [p["offset"] for p in reply["publications"]] == [1, 2]
    await publish("public:lost", "c")
    assert (await ann.recv_type("message"))["offset"] == 3  # the live stream follows without a gap


@override_realtime({"MAX_REPLY_BYTES": 1024})
async def test_over_max_reply_bytes_the_newest_of_the_new_epoch_that_fit(backend, login):
    ann = await login()
    before, after = await lost_then_published("public:lost", *(f"{n}" + "x" * 400 for n in range(5)))
    reply = await ann.request(
        {"type": "subscribe", "id": 1, "channel": "public:lost", "recover": {"epoch": before.epoch, "offset": 1}}
    )
    assert reply["recovered"] is False and reply["offset"] == 5
    assert [p["offset"] for p in reply["publications"]] == [4, 5]  # two of ~430 bytes fit in 1024
    await publish("public:lost", "next")
    assert (await ann.recv_type("message"))["offset"] == 6


@pytest.mark.parametrize("own_positions", [False, True], ids=["recorded", "positions"])
async def test_a_resume_across_an_epoch_change_pushes_the_new_epoch(backend, login, connect, own_positions):
    ann = await login()
    await ann.request({"type": "subscribe", "id": 1, "channel": "public:lost"})
    await ann.communicator.disconnect(code=1006)  # (a live subscription would end: insufficient_state)
    before, after = await lost_then_published("public:lost", "a", "b")
    access, _ = await sync_to_async(make_tokens)(ann.user)
    frame = {"type": "auth", "id": 1, "token": access, "resume": ann.welcome["session"]}
    if own_positions:
        frame["positions"] = {"public:lost": {"epoch": before.epoch, "offset": before.offset}}
    again = await connect()
    assert (await again.request(frame))["resumed"] is True
    restored = await again.recv_type("subscribed")
    assert (restored["recovered"], restored["epoch"], restored["offset"]) == (False, after[0].epoch, 2)
    assert datas(restored) == ["a", "b"]
