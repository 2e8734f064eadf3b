"""A private redis-server for the tests that stop, kill or restart Redis (the shared one must stay up).

`RedisServer(workdir).start()` runs `redis-server` on a free port of 127.0.0.1 without
persistence; `kill9()` ends it at once (its data is gone, as after a crash of a Redis
without persistence) and `start()` again brings up an empty one on the same port, so
the servers under test reconnect to the same URL.

Snapshots only on request: `save_snapshot(copy)` writes `dump.rdb` now (SAVE) and keeps a
copy of it; after `stop()`, `roll_back_to(copy)` puts that older file back, so the next
`start()` loads the data as it was then (a restart from an older snapshot, or a failover to
a replica that lagged). A server started after a snapshot loads the newest `dump.rdb`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis

from tests.conftest import override_realtime

from .servers import HOST, POLL_INTERVAL, free_port

READY_TIMEOUT = 10.0  # a bound on waiting for PING, never a measurement


class RedisServer:
    """One redis-server process, restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start redis-server on this object's port (again, after `kill9`)."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        return self

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> RedisServer:
        """Wait until it answers PING."""
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on {self.port} exited with {self.proc.returncode}")
                try:
                    if await client.ping():
                        return self
                except (OSError, aioredis.RedisError):
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            await client.aclose()

    async def save_snapshot(self, copy: Path) -> Path:
        """SAVE (the data of now, in `workdir/dump.rdb`), and keep a copy of that file at `copy`."""
        client = aioredis.Redis.from_url(self.url)
        try:
            await client.save()
        finally:
            await client.aclose()
        return Path(shutil.copyfile(self.workdir / "dump.rdb", copy))

    def roll_back_to(self, snapshot: Path) -> None:
        """While stopped: make the next `start()` load `snapshot` (an older `save_snapshot` copy)."""
        assert self.proc is None or self.proc.poll() is not None, "stop the server first"
        shutil.copyfile(snapshot, self.workdir / "dump.rdb")

    def kill9(self) -> None:
        """SIGKILL: Redis dies at once and, without persistence, loses everything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.asynccontextmanager
async def private_redis(workdir: Path, prefix: str) -> AsyncIterator[RedisServer]:
    """A started `RedisServer` that is also this test process's Redis (engine and channel layer, under
    `prefix`), so what the test publishes or reads meets the servers under test there; stopped after."""
    server = await RedisServer(workdir).start().wait_ready()
    try:
        with override_realtime(REDIS_URL=server.url, REDIS_PREFIX=prefix):
            yield server
    finally:
        server.stop()
