"""Run the test suite with a real Redis; the README's test command calls this.

Redis: `REDIS_URL` when it is set and answers; otherwise a private `redis-server`
on a free port for this run only (stopped afterwards); otherwise exit with how
to install Redis. Tests reach it through `TEST_REDIS_URL`; the project itself
runs with its embedded defaults unless a test asks for Redis.

Extra arguments go to pytest, e.g. `make test ARGS="-k healthz"`. The suite runs
on `TEST_WORKERS` pytest-xdist workers (default: 2, or 1 on a one-core machine);
the end-to-end and browser tests stay together on one worker.

First the browser client's unit tests run under Node's own test runner
(`node --test tests/js/`), unless `JS_TESTS=0`; without Node.js the run fails
and says how to install it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
NODE_HINT = (
    "The browser client's tests need Node.js 18 or newer (Debian/Ubuntu: `sudo apt-get install nodejs`, "
    "macOS: `brew install node`); JS_TESTS=0 skips them."
)
INSTALL_HINT = (
    "The tests need Redis. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, "
    "macOS: `brew install redis`) or set REDIS_URL to a reachable Redis."
)


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


def start_private_redis(workdir: str) -> tuple[subprocess.Popen, str]:
    binary = find_redis_server()
    if binary is None:
        sys.exit(INSTALL_HINT)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"Could not start {binary} on port {port}. {INSTALL_HINT}")
        time.sleep(0.05)
    return proc, url


def run_js_tests() -> int:
    """The browser client's unit tests (tests/js/) under `node --test`; their exit status."""
    node = shutil.which("node")
    if node is None:
        print(NODE_HINT, file=sys.stderr)
        return 1
    print("== browser client unit tests (node --test tests/js/)", flush=True)
    return subprocess.call([node, "--test", "tests/js/"], cwd=ROOT)


def main(argv: list[str]) -> int:
    if os.environ.get("JS_TESTS", "1") != "0":
        status = run_js_tests()
        if status != 0:
            return status
    env = dict(os.environ)
    url = env.pop("REDIS_URL", "")
    private = None
    with tempfile.TemporaryDirectory(prefix="rt-redis-") as workdir:
        if url and redis_answers(url):
            print(f"Tests use REDIS_URL={url}")
        else:
            if url:
                print(f"REDIS_URL={url} does not answer; starting a private redis-server.")
            private, url = start_private_redis(workdir)
            print(f"Tests use a private redis-server at {url}")
        env["TEST_REDIS_URL"] = url
        workers = int(env.get("TEST_WORKERS") or min(2, os.cpu_count() or 1))
        parallel = ["-n", str(workers), "--dist", "loadgroup"] if workers > 1 else ["-p", "no:xdist"]
        try:
            return subprocess.call([sys.executable, "-m", "pytest", *parallel, *argv], cwd=ROOT, env=env)
        finally:
            if private is not None:
                private.terminate()
                private.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
