"""pytest fixtures for real Redis Sentinel and Redis Cluster topologies (tests/topologies.py).

Not a conftest: a test module imports the fixtures it uses, e.g.

    from tests.topology_fixtures import sentinel_topology  # noqa: F401 - a fixture

Function-scoped: tests kill nodes, so every test gets a topology of its own (started in its
`tmp_path`, stopped after it). Skipped, with the reason, only when redis-server or redis-cli
is missing; a topology that does not form is an error, not a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.topologies import ClusterTopology, SentinelTopology, missing_binaries


def _require_binaries() -> None:
    reason = missing_binaries()
    if reason:
        pytest.skip(f"Redis topologies need redis-server and redis-cli: {reason}")


@pytest.fixture
def sentinel_topology(tmp_path) -> Iterator[SentinelTopology]:
    """A started `SentinelTopology`: master, replica, three sentinels (service "rtmaster")."""
    _require_binaries()
    topology = SentinelTopology(tmp_path / "sentinel")
    try:
        yield topology.start()
    finally:
        topology.stop()


@pytest.fixture
def cluster_topology(tmp_path) -> Iterator[ClusterTopology]:
    """A started `ClusterTopology`: six nodes, three masters with one replica each."""
    _require_binaries()
    topology = ClusterTopology(tmp_path / "cluster")
    try:
        yield topology.start()
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory) -> Iterator[ClusterTopology]:
    """One Cluster of three masters (no replicas) for the tests that only use it, never kill a node and
    keep their keys under a prefix of their own: the engine contract on a Cluster."""
    _require_binaries()
    topology = ClusterTopology(tmp_path_factory.mktemp("shared-cluster"), masters=3, replicas_per_master=0)
    try:
        yield topology.start()
    finally:
        topology.stop()
