"""Redis Cluster end to end: two server processes on `redis+cluster://…`, the master of the stream's shard
killed (SIGKILL) in the middle of a publishing stream while its replica lags, and what every subscriber saw.

The same checks as tests/e2e/test_sentinel_failover.py: no socket closes; a subscriber that missed a
publication the old master acknowledged is told `recovered: false`; everything after the failover arrives
once, in order, from the new epoch's first.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.engine import get_engine
from realtime.pubsub.publishing import publish
from tests.conftest import override_realtime
from tests.topology_fixtures import cluster_topology  # noqa: F401 - a fixture

from .test_reconnect import CHANNEL, FAST_NODES, WAIT, Publisher, start_receivers, stop_receivers

pytestmark = pytest.mark.django_db(transaction=True)

# While the shard's master is away its requests fail (answered `unavailable`) and the fan-out
# subscribes again where the slot lives now: logged, and expected here.
FAILOVER = r"redis\.exceptions\.|ConnectionRefusedError|Connection reset|ClusterDownError|lost a shard"


async def test_the_master_of_a_channels_shard_killed_mid_stream_loses_nothing_silently_and_no_socket(
    launch, servers, new_user, tokens, cluster_topology, redis_prefix, timings  # noqa: F811 - the fixture
):
    launch.tolerate(FAILOVER)
    url = cluster_topology.url
    with override_realtime(REDIS_URL=url, REDIS_PREFIX=redis_prefix):
        a, b = await servers(2, REDIS_URL=url, **FAST_NODES)
        access, _ = await tokens(await new_user("ann"))
        receivers = await start_receivers(5, lambda i: [(a, b)[i % 2].ws_url], lambda i: access)
        staying, away = receivers[:4], receivers[4]
        first = await publish(CHANNEL, {"n": -1})
        publisher = Publisher()
        publisher.made.append(first)
        publisher.start()
        try:
            await asyncio.gather(*(r.wait(lambda r=r: len(r.publications) >= 20, "20 publications") for r in receivers))
            await away.client.disconnect()
            master = cluster_topology.master_for_key(get_engine().key("m", CHANNEL))
            (replica,) = cluster_topology.replicas_of(master)
            replica.pause()
            # The replication link cut while the replica is stopped (it cannot reconnect): from now on
            # the master acknowledges what the replica never gets.
            assert master.client().client_kill_filter(_type="replica") == 1
            try:
                await publisher.made_after(len(publisher.made) + 4, WAIT)
                written = master.client().info("replication")["master_repl_offset"]
                cluster_topology.kill(master, [replica])
                killed_at = time.monotonic()
                made_before = len(publisher.made)
            finally:
                replica.resume()
            promoted = await asyncio.to_thread(cluster_topology.wait_for_failover, master, WAIT)
            promoted_after = time.monotonic() - killed_at
            assert promoted.port == replica.port
            after = await publisher.made_after(len(publisher.made), WAIT)  # the first made on the new master
            assert after.epoch != first.epoch

            def announced(r) -> bool:
                return any(at > killed_at and not event.recovered for at, event in r.subscribed)

            await away.client.connect()
            await asyncio.gather(*(r.wait(lambda r=r: announced(r), "recovered: false") for r in receivers))
            mark = publisher.made[-1]
            await asyncio.gather(*(r.wait(lambda r=r: r.has_offset(mark), "the new stream") for r in receivers))
        finally:
            last = await publisher.stop()
        await asyncio.gather(*(r.wait(lambda r=r: r.has_offset(last), "the last publication") for r in receivers))

        info = replica.client().info("replication")
        assert info["second_repl_offset"] - 1 < written, (info, written)  # promoted without the last writes
        failing = [at for at in publisher.failed_at if at >= killed_at]
        refused_for = (max(failing) - killed_at) if failing else 0.0
        timings(f"kill -> the last of {len(failing)} publications refused (unavailable)", refused_for)
        acknowledged = [p for p in publisher.made[:made_before] if p.epoch == first.epoch]
        lost = {}
        for receiver in receivers:
            old = receiver.offsets(first.epoch)
            assert old == list(range(first.offset, old[-1] + 1)), f"{receiver.name}: a gap before the failover"
            unseen = [p.offset for p in acknowledged if p.offset not in old]
            if unseen:
                assert announced(receiver), f"{receiver.name}: {len(unseen)} lost without `recovered: false`"
            lost[receiver.name] = len(unseen)
            new = receiver.offsets(last.epoch)
            assert new == list(range(new[0], last.offset + 1)), f"{receiver.name}: not every one after, in order"
            assert new[0] <= after.offset, f"{receiver.name}: the new epoch's first publications are missing"
        for receiver in staying:
            assert [change.state for _, change in receiver.states].count("connected") == 1, receiver.states
        assert lost[away.name] > 0
        timings(f"kill -> replica promoted; acknowledged and lost (announced), per client: {lost}", promoted_after)
        await stop_receivers(receivers)
