"""End-to-end harness: real daphne processes on one real Redis and the test database.

- `launch(**env)` spawns one server (not yet ready) with the test's Redis prefix,
  database and keys; `servers(n, **env)` starts `n` and waits until each answers
  `GET /healthz`. At teardown every server gets SIGTERM, and the test fails if
  any server logged an unhandled error.
- `ws` opens `tests.e2e.client.Client` connections that are closed at teardown.
- `timings` records figures (latencies) that are printed in the terminal summary:
  informational only, never a pass/fail threshold.

The servers see the test's data only once it is committed: `transactional_db`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connection, connections

from tests.conftest import make_tokens

from .client import Client
from .servers import DaphneServer, UvicornServer, database_url, server_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every end-to-end test: one xdist worker runs them one after another (`--dist loadgroup`),
    so server processes of two tests never compete for the machine's cores."""
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.xdist_group("e2e"))


@pytest.fixture
def timings(request) -> Callable[[str, float], None]:
    """`timings("what", seconds)`: print a figure now and again in the terminal summary."""

    def record(what: str, seconds: float) -> None:
        print(f"TIMING {what}: {seconds * 1000:.1f} ms")
        # Carried by the test's report, so that the summary shows it also from an xdist worker.
        request.node.user_properties.append(("timing", (what, seconds)))

    return record


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> Any:
    """Close the database connections the test's `sync_to_async` thread opened (async ORM calls).

    Otherwise that thread keeps a connection to the test database, and PostgreSQL
    refuses to drop it at the end of the run.
    """
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def server_base_env(transactional_db, redis_url: str, redis_prefix: str) -> dict[str, str]:
    """The environment every server of this test shares: database, Redis prefix, keys."""
    return server_env(
        database_url=database_url(connection.settings_dict),
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        secret_key=django_settings.SECRET_KEY,
        signing_key=django_settings.SIMPLE_JWT["SIGNING_KEY"],
    )


@pytest.fixture
def launch(server_base_env: dict[str, str], tmp_path) -> Any:
    """Spawn servers: `launch(REALTIME_HEARTBEAT=1)`, `launch("uvicorn")`, `launch("uvicorn", args=(...))`;
    stopped (SIGTERM) and their logs checked at teardown.

    `launch.tolerate(pattern)`: log records matching the regex `pattern` are not charged to the
    test (only for a test that breaks a service on purpose, and says why).
    """
    started: list[DaphneServer] = []
    tolerated: list[re.Pattern] = []

    def spawn(kind: str = "daphne", *, args: tuple[str, ...] | None = None, **env: object) -> DaphneServer:
        name = f"server{len(started)}"
        extra = {key: str(value) for key, value in env.items()}
        server_class = {"daphne": DaphneServer, "uvicorn": UvicornServer}[kind]
        options = {} if args is None else {"args": args}  # server options after the harness's own
        server = server_class({**server_base_env, **extra}, tmp_path / f"{name}.log", name=name, **options)
        started.append(server.start())
        return server

    spawn.tolerate = lambda pattern: tolerated.append(re.compile(pattern))
    yield spawn
    for server in started:
        server.signal_stop()  # all at once: their graceful stops overlap
    for server in started:
        server.terminate()
    failures = []
    for server in started:
        problems = [record for record in server.problems() if not any(p.search(record) for p in tolerated)]
        if problems:
            failures.append(f"{server.name} (pid {server.pid}) logged:\n" + "\n".join(problems[:5]))
            failures.append(f"---- {server.log_path}\n{server.log_text()[-6000:]}")
    if failures:
        pytest.fail("A server logged an unhandled error:\n" + "\n".join(failures), pytrace=False)


@pytest.fixture
def servers(launch) -> Callable[..., Any]:
    """`await servers(2, REALTIME_NODE_HEARTBEAT=0.5)`: that many ready servers, started in parallel."""

    async def start(count: int = 1, kind: str = "daphne", **env: object) -> list[DaphneServer]:
        spawned = [launch(kind, **env) for _ in range(count)]
        await asyncio.gather(*(server.wait_ready() for server in spawned))
        return spawned

    return start


@pytest.fixture
async def ws(launch) -> Any:
    """Open client connections: `await ws(server, token=...)`; all closed before the servers stop."""
    opened: list[Client] = []

    async def open_client(server: DaphneServer, *, welcome: bool = False, **kwargs: Any) -> Client:
        if welcome:
            client = await Client.authenticated(server.ws_url, **kwargs)
        else:
            client = await Client.open(server.ws_url, **kwargs)
        opened.append(client)
        return client

    yield open_client
    await asyncio.gather(*(client.close() for client in opened))


@pytest.fixture
def tokens() -> Callable[[Any], Any]:
    """`await tokens(user)`: a fresh (access, refresh) pair, minted in this process with the servers' key."""
    return sync_to_async(make_tokens)


@pytest.fixture
def new_user(make_user) -> Callable[..., Any]:
    """`await new_user("ann", is_staff=True)`: `make_user` for async tests (committed: transactional_db)."""
    return sync_to_async(make_user)
