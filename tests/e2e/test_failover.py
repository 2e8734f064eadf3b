"""Redis Sentinel and Redis Cluster end to end: two server processes on the topology's URL, the master that
holds the stream killed (SIGKILL) in the middle of a publishing stream while its replica lags, and what
every subscriber saw.

Real parts: the topology's redis-servers (tests/topologies.py), two daphne processes,
`realtime_client.Client`s subscribed on both, and a publisher in this process on the same URL.

The replica is stopped (SIGSTOP) and its replication link cut, so the master acknowledges publications
the replica never gets; then the master is killed and the replica promoted without them: the rollback
that asynchronous replication allows (checked by replication offsets). What must hold:
- no socket is closed: each client stays connected through the failover;
- every publication acknowledged before the failover is delivered, or its loss is announced: the
  subscriber's next `subscribed` after it says `recovered: false` (a new epoch). A fifth client is away
  across the failover and comes back: it missed acknowledged publications, and is told;
- every publication made after the failover reaches every subscriber once, in order, from the first
  of the new epoch.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.engine import get_engine
from realtime.pubsub.publishing import publish
from tests.conftest import override_realtime
from tests.topology_fixtures import cluster_topology, sentinel_topology  # noqa: F401 - fixtures

from .test_reconnect import CHANNEL, FAST_NODES, WAIT, Publisher, start_receivers, stop_receivers

pytestmark = pytest.mark.django_db(transaction=True)

# While the master is away the servers' requests fail (answered `unavailable`) and their fan-out
# connection subscribes again: logged, and expected here.
FAILOVER = r"redis\.exceptions\.|MasterNotFoundError|ConnectionRefusedError|Connection reset|lost a shard"


class Sentinel:
    """The master of the Sentinel service, and its replica."""

    def __init__(self, topology) -> None:
        self.topology = topology

    def master_and_replica(self):
        return self.topology.server_at(self.topology.master_address()), self.topology.replica()

    def kill(self, master, replica) -> None:
        self.topology.kill_master()

    def wait_promoted(self, master, replica) -> bool:
        return self.topology.wait_for_failover(master.address, WAIT) == replica.address


class Cluster:
    """The master of the shard that owns the stream's slot, and its replica."""

    def __init__(self, topology) -> None:
        self.topology = topology

    def master_and_replica(self):
        master = self.topology.master_for_key(get_engine().key("m", CHANNEL))
        (replica,) = self.topology.replicas_of(master)
        return master, replica

    def kill(self, master, replica) -> None:
        self.topology.kill(master, [replica])  # (its link to the replica is cut: named here)

    def wait_promoted(self, master, replica) -> bool:
        return self.topology.wait_for_failover(master, WAIT).port == replica.port


@pytest.fixture(params=["sentinel", "cluster"])
def topology(request):
    """A Sentinel set or a Cluster of this test's own, with what the test needs to know of it."""
    started = request.getfixturevalue(f"{request.param}_topology")
    return (Sentinel if request.param == "sentinel" else Cluster)(started)


async def test_a_master_killed_mid_stream_loses_nothing_silently_and_no_socket(
    launch, servers, new_user, tokens, topology, redis_prefix, timings
):
    launch.tolerate(FAILOVER)
    url = topology.topology.url
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
            master, replica = topology.master_and_replica()
            replica.pause()
            # The replication link cut while the replica is stopped (it cannot reconnect): from now on
            # the master acknowledges what the replica never gets, not even into its socket's buffer.
            assert master.client().client_kill_filter(_type="replica") == 1
            try:
                await publisher.made_after(len(publisher.made) + 4, WAIT)
                written = master.client().info("replication")["master_repl_offset"]
                topology.kill(master, replica)
                killed_at = time.monotonic()
                made_before = len(publisher.made)  # acknowledged before the kill (one in flight may still land)
            finally:
                replica.resume()
            assert await asyncio.to_thread(topology.wait_promoted, master, replica)
            promoted_after = time.monotonic() - killed_at
            after = await publisher.made_after(len(publisher.made), WAIT)  # the first made on the new master
            assert after.epoch != first.epoch  # the data of another instance: a new epoch

            def announced(r) -> bool:
                return any(at > killed_at and not event.recovered for at, event in r.subscribed)

            await away.client.connect()  # back: it recovers from its last position, of the old epoch
            await asyncio.gather(*(r.wait(lambda r=r: announced(r), "recovered: false") for r in receivers))
            mark = publisher.made[-1]
            await asyncio.gather(*(r.wait(lambda r=r: r.has_offset(mark), "the new stream") for r in receivers))
        finally:
            last = await publisher.stop()
        await asyncio.gather(*(r.wait(lambda r=r: r.has_offset(last), "the last publication") for r in receivers))

        # The promoted replica had not got all the old master wrote (its stream ended short): the rollback.
        promoted = replica.client().info("replication")
        assert promoted["second_repl_offset"] - 1 < written, (promoted, written)
        failing = [at for at in publisher.failed_at if at >= killed_at]
        refused_for = (max(failing) - killed_at) if failing else 0.0
        timings(f"kill -> the last of {len(failing)} publications refused (unavailable)", refused_for)
        acknowledged = [p for p in publisher.made[:made_before] if p.epoch == first.epoch]
        lost = {}
        for receiver in receivers:
            old = receiver.offsets(first.epoch)
            assert old == list(range(first.offset, old[-1] + 1)), f"{receiver.name}: a gap before the failover"
            unseen = [p.offset for p in acknowledged if p.offset not in old]
            if unseen:  # lost with the old master: announced by the `subscribed` after the failover
                assert announced(receiver), f"{receiver.name}: {len(unseen)} lost without `recovered: false`"
            lost[receiver.name] = len(unseen)
            new = receiver.offsets(last.epoch)
            assert new == list(range(new[0], last.offset + 1)), f"{receiver.name}: not every one after, in order"
            assert new[0] <= after.offset, f"{receiver.name}: the new epoch's first publications are missing"
        for receiver in staying:  # no socket closed: the one connection each opened is still its connection
            assert [change.state for _, change in receiver.states].count("connected") == 1, receiver.states
        assert lost[away.name] > 0  # away across the rollback: it missed acknowledged publications, and was told
        # Informational: what the failover cost (in the terminal summary).
        timings(f"kill -> replica promoted; acknowledged and lost (announced), per client: {lost}", promoted_after)
        await stop_receivers(receivers)
