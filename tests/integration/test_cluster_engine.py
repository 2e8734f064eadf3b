"""The engine on a Redis Cluster (realtime/engine/cluster.py): a channel's traffic stays on its own shard."""

from __future__ import annotations

import asyncio

import pytest

from realtime.core.frames import publication_parts
from realtime.engine.cluster import ClusterEngine
from tests.topology_fixtures import shared_cluster  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


def _script_and_publish_calls(node) -> int:
    """What `node` has done for publications so far: scripts and sharded publishes it ran (INFO
    commandstats), and publications it received over the cluster bus (a PUBLISH reaches every node so)."""
    stats = node.client().info("commandstats")
    ran = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval", "spublish"))
    bus = node.client().execute_command("CLUSTER INFO")  # (redis-py reads it into a dict)
    received = ("cluster_stats_messages_publish_received", "cluster_stats_messages_publishshard_received")
    return ran + sum(int(bus.get(name, 0)) for name in received)


async def test_a_channels_publications_and_fanout_touch_only_the_shard_that_owns_it(
    shared_cluster, redis_prefix  # noqa: F811 - the fixture
):
    engine = ClusterEngine(shared_cluster.url, redis_prefix)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = engine.listener(lambda channel, event: heard.put_nowait(event), lambda channel: None)
    try:
        channel = "public:one-shard"
        await listener.subscribe(channel)
        owner = shared_cluster.master_for_key(engine.key("m", channel))
        others = [node for node in shared_cluster.nodes if node.port != owner.port]
        before = {node.port: _script_and_publish_calls(node) for node in shared_cluster.nodes}
        for n in range(10):
            head, tail = publication_parts(channel, {"n": n}, None, 1_800_000_000_000)
            await engine.publish(channel, head, tail, size=100, ttl=60)
        for n in range(10):
            assert f'"data":{{"n":{n}}}' in await asyncio.wait_for(heard.get(), 5)
        after = {node.port: _script_and_publish_calls(node) for node in shared_cluster.nodes}
        assert after[owner.port] - before[owner.port] >= 10  # the ten publish scripts ran on the owner
        assert all(after[node.port] == before[node.port] for node in others), (before, after)
    finally:
        await listener.close()
        await engine.close()
