"""Connect-rate benchmark: how fast one daphne process accepts authenticated sockets.

    .venv/bin/python bench/connects.py --connections 500 --concurrency 50

It makes a temporary SQLite database (`manage.py migrate`), creates users and
mints their access tokens (`manage.py shell -c`), starts one daphne process on
127.0.0.1 (like the end-to-end harness), then opens `--connections` WebSockets
with `Authorization: Bearer`, at most `--concurrency` handshakes in flight, and
waits for `welcome` on each (the session row is queued then, and written in the
background). The sockets stay open until all are in, then close. It prints
connects per second, the p50/p95 connect-to-`welcome` latency, and the session
rows recorded once the server has stopped.

The server's engine (connection slots, session records, control events) is the
embedded in-memory one unless `--redis-url` is given. Everything is bounded:
`--timeout` for the whole run, 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.client import Client  # noqa: E402
from tests.e2e.servers import DaphneServer, server_env  # noqa: E402

# Creates the users and prints one JSON list of access tokens (no database write per token).
MINT = """
import json
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken
User = get_user_model()
users = [User(username=f"bench{i}") for i in range({users})]
for user in users:
    user.set_unusable_password()
users = User.objects.bulk_create(users)
print(json.dumps([str(AccessToken.for_user(user)) for user in User.objects.filter(username__startswith="bench")]))
"""
COUNT_ROWS = "from realtime.models import Connection; print(Connection.objects.exclude(user=None).count())"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500, help="sockets to open (1-5000)")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight at once (1-500)")
    parser.add_argument("--per-user", type=int, default=10, help="sockets per user (<= MAX_CONNECTIONS_PER_USER)")
    parser.add_argument("--redis-url", default="", help="the server's REDIS_URL (127.0.0.1 only)")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on the whole run, in seconds")
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 5000:
        parser.error("--connections must be 1-5000")
    if not 1 <= args.concurrency <= 500:
        parser.error("--concurrency must be 1-500")
    if not 1 <= args.per_user <= 20:
        parser.error("--per-user must be 1-20 (the default MAX_CONNECTIONS_PER_USER)")
    if args.redis_url and not args.redis_url.startswith(("redis://127.0.0.1", "redis://localhost")):
        parser.error("--redis-url must point at 127.0.0.1")
    return args


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py` with the benchmark's environment; return its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        sys.exit(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def open_one(url: str, token: str, gate: asyncio.Semaphore) -> tuple[Client | None, float, str]:
    """Open one socket and wait for `welcome`: (client, seconds, error)."""
    async with gate:
        started = time.perf_counter()
        client = None
        try:
            client = await Client.open(url, token=token)
            await client.recv_type("welcome")
            return client, time.perf_counter() - started, ""
        except Exception as exc:  # counted and shown, the run goes on
            if client is not None:
                await client.close()
            return None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"[:200]


async def run(args: argparse.Namespace, env: dict[str, str], tokens: list[str], log: Path) -> int:
    """Start the server, open the sockets, print the figures; returns the number of failures."""
    server = DaphneServer(env, log, name="bench", args=("-v", "1")).start()
    try:
        await server.wait_ready()
        gate = asyncio.Semaphore(args.concurrency)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(open_one(server.ws_url, tokens[i // args.per_user], gate) for i in range(args.connections))
        )
        elapsed = time.perf_counter() - started
        clients = [client for client, _, _ in results if client is not None]
        latencies = [seconds for client, seconds, _ in results if client is not None]
        errors = [error for client, _, error in results if client is None]
        await asyncio.gather(*(client.close() for client in clients))
    finally:
        await server.aterminate()
    print(f"connections: {args.connections}, concurrency: {args.concurrency}, per user: {args.per_user}")
    print(f"engine: {'redis' if args.redis_url else 'in-memory'}, database: SQLite (temporary file)")
    print(f"welcomed: {len(clients)}, failed: {len(errors)}, in {elapsed:.2f} s")
    print(f"connects/s: {len(clients) / elapsed:.0f}")
    if latencies:
        print(
            "connect-to-welcome latency: "
            f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p95 {percentile(latencies, 0.95) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms, mean {statistics.fmean(latencies) * 1000:.1f} ms"
        )
    for error in sorted(set(errors))[:5]:
        print(f"  error: {error}")
    if server.problems():
        print(f"the server logged errors, see {log}:\n" + "\n".join(server.problems()[:3]))
    return len(errors)


def main(argv: list[str]) -> int:
    """Set up a database and users, run the benchmark within the time bound."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as workdir:
        key = secrets.token_urlsafe(40)
        env = server_env(
            database_url=f"sqlite:///{Path(workdir) / 'bench.sqlite3'}",
            redis_url=args.redis_url,
            redis_prefix=f"bench-{secrets.token_hex(4)}",
            secret_key=key,
            signing_key=key,
        )
        manage(env, "migrate", "--noinput", "-v", "0")
        users = math.ceil(args.connections / args.per_user)
        tokens = json.loads(manage(env, "shell", "-c", MINT.replace("{users}", str(users))).strip().splitlines()[-1])
        log = Path(workdir) / "server.log"
        try:
            failures = asyncio.run(asyncio.wait_for(run(args, env, tokens, log), args.timeout))
        except TimeoutError:
            print(f"gave up after {args.timeout} s", file=sys.stderr)
            return 2
        rows = manage(env, "shell", "-c", COUNT_ROWS).strip().splitlines()[-1]
        print(f"session rows recorded: {rows}")
        if failures and os.environ.get("BENCH_SHOW_LOG"):
            print(log.read_text()[-5000:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
