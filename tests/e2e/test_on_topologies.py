"""The cross-process features again, with both server processes and this test process on Redis Sentinel,
and again on a Redis Cluster.

The tests are the ones of their own modules, collected here a second time with `redis_url` pointing at
a topology of this test's own (tests/topologies.py): a master, a replica and three sentinels
(`redis+sentinel://…`), or three masters and three replicas (`redis+cluster://…`, each channel's keys
and fan-out on its own shard). The servers wait for `/healthz` (its control-event round trip), and then
revocation, admin actions, the per-user connection limit, presence, recovery, racing publishers over
sockets and the HTTP API, resume on another process and per-process metrics are checked as they are on
one Redis.
"""

from __future__ import annotations

import uuid

import pytest

from tests.topology_fixtures import cluster_topology, sentinel_topology  # noqa: F401 - fixtures

from .test_channels import (  # noqa: F401 - collected here again
    test_dropped_subscriber_recovers_exactly_the_missed_publications,
    test_join_and_leave_are_per_user_across_processes,
    test_racing_publishers_every_subscriber_gets_each_publication_once_in_order,
)
from .test_cross_process import (  # noqa: F401 - collected here again
    test_admin_action_on_a_reaches_the_socket_on_b,
    test_connection_limit_counts_sockets_on_every_server,
    test_deactivation_in_another_process_disconnects_on_both_servers,
    test_logout_on_a_disconnects_the_users_sockets_on_b,
)
from .test_metrics_e2e import test_each_process_counts_its_own_publications_and_deliveries  # noqa: F401
from .test_reconnect import (  # noqa: F401 - collected here again
    stream_user,
    test_clients_of_a_killed_process_resume_on_another_with_nothing_lost,
)


@pytest.fixture(params=["sentinel", "cluster"])
def redis_url(request) -> str:
    """This test's Sentinel set or Cluster, for the servers and for this process."""
    return request.getfixturevalue(f"{request.param}_topology").url


@pytest.fixture
def redis_prefix() -> str:
    """A prefix of this test's own (the topology, with every key, goes with the test)."""
    return f"test-{uuid.uuid4().hex[:10]}"
