"""A private redis-server for the tests that stop, kill or restart Redis (the shared one must stay up).

`RedisServer(workdir).start()` runs `redis-server` on a free port of 127.0.0.1 without
persistence; `kill9()` ends it at once (its data is gone, as after a crash of a Redis
without persistence) and `start()` again brings up an empty one on the same port, so
the servers under test reconnect to the same URL.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis.asyncio as aioredis

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
