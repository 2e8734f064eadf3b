"""The servers under test: what each one runs, with which environment, and how it is stopped.

One process each, on 127.0.0.1, on a free port (the same one again after a kill, for the
reconnect storm), its log in the run's log folder:

| kind | command (cwd) | backend |
|---|---|---|
| `ours` | `python -m daphne project.asgi:application` or `python -m project.serve` (root) | redis or memory |
| `baseline` | `python -m daphne baseline.asgi:application` (bench/) | channels-redis core |
| `socketio` | `python -m uvicorn peers.socketio_app:app` (bench/) | python-socketio's AsyncRedisManager |

Ours has no channel layer: `redis` is its engine on Redis (REDIS_URL set), `memory` the embedded
in-memory engine (no REDIS_URL). Without Redis the baseline runs on Channels' in-memory layer
and python-socketio on its in-process manager (backend `memory`).

`BenchServer` is the end-to-end harness's `DaphneServer` (tests/e2e/servers.py: readiness on
`GET /healthz`, SIGTERM then SIGKILL, die-with-parent, log scanning) with another command line.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from project.serve import command as serve_command  # noqa: E402
from realtime.support.conf import DEFAULT_NAMESPACES  # noqa: E402
from tests.e2e.servers import HOST, DaphneServer, server_env  # noqa: E402

# The channels of the benchmark live in their own namespace: history and offsets as `public`
# (the default rules), presence off (neither peer has presence; with it every subscribe of
# 1000 subscribers would push a `join` to all the others before the measurement starts).
NAMESPACES = {
    **{name: DEFAULT_NAMESPACES[name] for name in ("public", "user")},
    "bench": {"presence": False, "join_leave": False},
}
TOKEN_SECONDS = 6 * 3600  # the run's tokens outlive any run (a socket lives no longer than its token)


@dataclass(frozen=True)
class Target:
    """One server setup to measure."""

    kind: str  # ours | baseline | socketio
    server: str  # daphne | uvicorn
    backend: str  # ours: redis | memory; baseline: core | memory; socketio: redis-manager | memory

    @property
    def key(self) -> str:
        return self.kind if self.kind != "ours" else f"ours-{self.server}-{self.backend}"

    @property
    def label(self) -> str:
        if self.kind == "baseline":
            layer = "in-memory layer" if self.backend == "memory" else "channels-redis core layer"
            return f"plain Channels (JSON consumer + group_send, {layer}, daphne)"
        if self.kind == "socketio":
            return "python-socketio + Redis manager, uvicorn"
        backend = {"redis": "Redis", "memory": "in-memory engine", "cluster": "Redis Cluster (3 masters)"}[self.backend]
        return f"this project, {self.server}, {backend}"


def missing_modules(target: Target) -> list[str]:
    """The Python packages a target needs that are not installed."""
    needs = {"socketio": ["socketio", "engineio", "uvicorn"]}.get(target.kind, [])
    if target.server == "uvicorn":
        needs = [*needs, "uvicorn"]
    return sorted({name for name in needs if importlib.util.find_spec(name) is None})


class BenchServer(DaphneServer):
    """A server process of any kind, with the e2e harness's lifecycle and log checks."""

    def __init__(self, target: Target, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path, name=target.key)
        self.target = target
        self.workdir = BENCH if target.kind in ("socketio", "baseline") else ROOT

    def command(self) -> list[str]:
        """The command line. Access logs off on every server (daphne -v 0, uvicorn --no-access-log): the
        same for all, and a line per connection on stdout is not what is measured."""
        port = str(self.port)
        daphne = [sys.executable, "-m", "daphne", "-b", HOST, "-p", port, "-v", "0"]
        if self.target.kind == "socketio":
            return self._uvicorn("peers.socketio_app:app", port)
        if self.target.kind == "baseline":
            return [*daphne, "baseline.asgi:application"]
        if self.target.server == "uvicorn":  # the production command (project/serve.py)
            return serve_command("--host", HOST, "--port", port, "--log-level", "warning", "--no-access-log")
        return [*daphne, "project.asgi:application"]

    @staticmethod
    def _uvicorn(app: str, port: str) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", port,
            "--lifespan", "on", "--log-level", "warning", "--no-access-log", "--ws", "websockets-sansio",
            # engine.io has a heartbeat of its own (as ours has: project/serve.py): uvicorn's WebSocket
            # keepalive duplicates it and, under overload, closed sockets with 1011 (docs/operations.md).
            "--ws-ping-interval", "0",
        ]  # fmt: skip

    @property
    def base_url(self) -> str:
        return f"ws://{HOST}:{self.port}"


def target_env(
    target: Target, *, database_url: str, redis_url: str, prefix: str, secret: str
) -> dict[str, str]:
    """The environment of one server process of `target`."""
    redis = "" if target.backend == "memory" else redis_url
    extra: dict[str, object] = {"JWT_ACCESS_SECONDS": TOKEN_SECONDS}
    if target.kind == "ours":
        extra.update(
            {
                # One publisher socket sends hundreds of frames a second in scenario 3: lift the per-socket
                # frame rate (default 50/s); everything else is the default.
                "REALTIME_RATE": 100000,
                "REALTIME_RATE_BURST": 100000,
                # ... and its bytes (PUBLISH_BYTES_PER_SECOND, 256 KiB/s by default): no quota in the way.
                "REALTIME_PUBLISH_BYTES_PER_SECOND": 1 << 30,
                # ... and the per-user connect rate (CONNECT_BURST 30): the scenarios connect the same
                # users one after another, 10 sockets each (the bucket is still taken from, never empty).
                "REALTIME_CONNECT_BURST": 100000,
                # ... and the admission gate's places for sockets still without credentials (20 per
                # address, 1000 per process): the Python client authenticates in its first frame, and
                # the load processes' thousands of clients all come from 127.0.0.1, where a deployment's
                # come from as many addresses. Scenario 5's storm would otherwise measure the gate.
                "REALTIME_MAX_UNAUTHENTICATED": 100000,
                "REALTIME_MAX_UNAUTHENTICATED_PER_ADDRESS": 100000,
                "REALTIME_NAMESPACES": json.dumps(NAMESPACES),
            }
        )
    else:
        extra["DJANGO_SETTINGS_MODULE"] = "baseline.settings"
    return server_env(
        database_url=database_url, redis_url=redis, redis_prefix=prefix, secret_key=secret, signing_key=secret,
        extra=extra,
    )  # fmt: skip
