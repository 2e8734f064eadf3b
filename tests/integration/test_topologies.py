"""The Sentinel and Cluster topologies of tests/topologies.py, through redis-py's own clients.

Each test starts its topology, writes and reads through the client an engine would use
(`Sentinel.master_for`, `RedisCluster`), kills the master holding the data, waits for the
failover and writes again through the same client object: the write must succeed and land
on the promoted node, a registered script must run there (Redis 7 does not replicate the
script cache: redis-py meets NOSCRIPT and loads it again), and what was replicated before the
kill must still be there.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from tests.topologies import SERVICE
from tests.topology_fixtures import cluster_topology, sentinel_topology  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration]

# A write and the value it leaves, in one script: EVALSHA after the failover meets NOSCRIPT on
# the promoted node (the script cache is not replicated) and redis-py loads it again.
INCR_SCRIPT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def test_a_sentinel_master_client_writes_to_the_new_master_after_a_failover(
    sentinel_topology,  # noqa: F811 - the fixture imported above
):
    topology = sentinel_topology
    sentinel = Sentinel(topology.sentinel_addresses, socket_timeout=2, socket_connect_timeout=2)
    master = sentinel.master_for(SERVICE, socket_timeout=2, socket_connect_timeout=2)
    incr = master.register_script(INCR_SCRIPT)
    try:
        old = topology.master_address()
        assert await incr(keys=["{room:1}:n"], args=[1]) == 1
        async with master.pipeline(transaction=False) as pipe:  # one connection: WAIT covers the SET
            pipe.set("{room:1}:k", "before").wait(1, 5000)
            _, replicas = await pipe.execute()
        assert replicas == 1, "the replica acknowledged the writes before the kill"
        assert await master.get("{room:1}:k") == b"before"

        assert topology.kill_master() == old
        new = await asyncio.to_thread(topology.wait_for_failover, old)
        assert new != old

        assert await master.set("{room:1}:k", "after")  # the same client object
        assert await master.get("{room:1}:k") == b"after"
        assert topology.server_at(new).client().get("{room:1}:k") == "after"  # on the promoted node
        assert await incr(keys=["{room:1}:n"], args=[10]) == 11  # replicated data, script reloaded
        assert master.connection_pool.master_address == new
    finally:
        await master.aclose()
        await sentinel.aclose()


async def test_a_cluster_client_writes_to_the_promoted_replica_after_a_failover(
    cluster_topology,  # noqa: F811 - the fixture imported above
):
    topology = cluster_topology
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in topology.startup_addresses],
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    incr = client.register_script(INCR_SCRIPT)
    try:
        # Keys of one hash slot: one script may touch them all.
        assert await incr(keys=["{room:1}:n"], args=[1]) == 1
        assert await client.set("{room:1}:k", "before")
        owner = topology.master_for_key("{room:1}:k")
        node = client.get_node_from_key("{room:1}:k")
        assert node.port == owner.port
        # WAIT on the connection that wrote (one task, so the node's one connection).
        assert await client.execute_command("WAIT", 1, 5000, target_nodes=node) == 1

        topology.kill(owner)
        promoted = await asyncio.to_thread(topology.wait_for_failover, owner)
        assert promoted is not owner

        assert await client.set("{room:1}:k", "after")  # the same client object
        assert await client.get("{room:1}:k") == b"after"
        assert topology.master_for_key("{room:1}:k") is promoted
        assert promoted.client().get("{room:1}:k") == "after"  # on the promoted node
        assert await incr(keys=["{room:1}:n"], args=[10]) == 11  # replicated data, script reloaded
        assert client.get_node_from_key("{room:1}:k").port == promoted.port
    finally:
        await client.aclose()
