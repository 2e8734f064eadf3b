"""Finding or starting a Redis for the README's commands (`make run`, `make test`).

No Django here: both scripts use it before the project's settings are read.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import redis

INSTALL_HINT = (
    "Install Redis (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`) "
    "or set REDIS_URL to a reachable Redis."
)
DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_answers(url: str) -> bool:
    """True when a Redis server at `url` answers PING."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_redis_server() -> str | None:
    return shutil.which("redis-server") or next(
        (
            p
            for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
            if os.access(p, os.X_OK)
        ),
        None,
    )


def start_private_redis(workdir: str, *, persist: bool = False) -> tuple[subprocess.Popen, str]:
    """A redis-server of our own on a free port of 127.0.0.1, its files in `workdir`.

    `persist` (`make run`): an append-only file in `workdir`, and the server runs on in the
    background (`redis.pid` in `workdir`) so that the next run finds the same history, epochs
    and sessions; otherwise nothing is written and the caller stops it (`make test`).
    Exits with INSTALL_HINT without Redis.
    """
    binary = find_redis_server()
    if binary is None:
        sys.exit(f"No redis-server found. {INSTALL_HINT}")
    port = free_port()
    if persist:
        durability = ["--appendonly", "yes", "--save", "", "--daemonize", "yes", "--pidfile", f"{workdir}/redis.pid"]
    else:
        durability = ["--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", *durability, "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if (proc.poll() not in (None, 0) if persist else proc.poll() is not None) or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"Could not start {binary} on port {port}. {INSTALL_HINT}")
        time.sleep(0.05)
    if persist:
        proc.wait(10)  # the foreground process exits once the server has gone to the background
    return proc, url
