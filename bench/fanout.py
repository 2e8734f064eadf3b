"""Fan-out benchmark: deliveries per second from one publisher to many subscribers of one channel.

    .venv/bin/python bench/fanout.py --subscribers 100 --messages 2000 --window 50

For each engine (`--engines`, default both):

- `memory`: no REDIS_URL: the embedded in-memory engine;
- `redis`: REDIS_URL set: the engine on Redis (history, fan-out, control events);

it starts one daphne process on 127.0.0.1 with a temporary, migrated SQLite
database (like bench/connects.py), opens `--subscribers` sockets (spread over
users, `--per-user` each) subscribed to `public:fanout`, and one publisher socket
that publishes `--messages` small JSON objects as fast as the `published` replies
come back, `--window` in flight. It reports:

- publications/s: messages / (first publish -> last `published` reply);
- deliveries/s: subscribers * messages / (first publish -> the last subscriber's last message).

Each subscriber checks that it got offsets 1..N in order, exactly once; any
violation (a gap, a duplicate, a subscription ended by the server) is printed and
makes the exit status 1: it would be a bug, or a limit the run went over.

Redis: `--redis-url`, else `REDIS_URL`, else a private `redis-server` started for
the run (as scripts/runtests.py does); without any, `redis` is skipped.
Everything is bounded (`--timeout` per engine, `--idle` without progress) and on
127.0.0.1 only. The clients run in this one Python process, on the same machine as
the server: the figures are a floor to compare changes, not a capacity plan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import redis  # noqa: E402
from local_redis import find_redis_server, redis_answers, start_private_redis  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.connects import manage  # noqa: E402
from tests.e2e.client import Client  # noqa: E402
from tests.e2e.servers import DaphneServer, server_env  # noqa: E402

CHANNEL = "public:fanout"
PING, PONG = {"type": "ping"}, {"type": "pong"}
ENGINES = ("memory", "redis")
# Creates the users and prints one JSON list of access tokens, as bench/connects.py does.
MINT = """
import json
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken
User = get_user_model()
users = [User(username=f"fan{i}") for i in range({users})]
for user in users:
    user.set_unusable_password()
User.objects.bulk_create(users)
print(json.dumps([str(AccessToken.for_user(user)) for user in User.objects.filter(username__startswith="fan")]))
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100, help="subscriber sockets (1-1000)")
    parser.add_argument("--messages", type=int, default=2000, help="publications (1-100000)")
    parser.add_argument("--window", type=int, default=50, help="publications in flight (1-1000)")
    parser.add_argument("--per-user", type=int, default=10, help="sockets per user (<= MAX_CONNECTIONS_PER_USER)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""), help="a Redis on 127.0.0.1")
    parser.add_argument("--timeout", type=float, default=180.0, help="bound on one engine's run, in seconds")
    parser.add_argument("--idle", type=float, default=15.0, help="give up after this long without a delivery")
    args = parser.parse_args(argv)
    if not 1 <= args.subscribers <= 1000:
        parser.error("--subscribers must be 1-1000")
    if not 1 <= args.messages <= 100000:
        parser.error("--messages must be 1-100000")
    if not 1 <= args.window <= 1000:
        parser.error("--window must be 1-1000")
    if not 1 <= args.per_user <= 20:
        parser.error("--per-user must be 1-20 (the default MAX_CONNECTIONS_PER_USER)")
    args.engines = list(dict.fromkeys(engine.strip() for engine in args.engines.split(",") if engine.strip()))
    if not args.engines or set(args.engines) - set(ENGINES):
        parser.error(f"--engines must name some of {', '.join(ENGINES)}")
    if args.redis_url and not args.redis_url.startswith(("redis://127.0.0.1", "redis://localhost")):
        parser.error("--redis-url must point at 127.0.0.1")
    return args


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux `/proc/<pid>/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Subscriber:
    """One subscriber socket: what it received, checked as it arrives."""

    index: int
    expected: int  # the total it must reach
    next_offset: int = 1
    received: int = 0
    last_at: float = 0.0
    violations: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, frame: dict) -> None:
        """Check one frame: a `message` must carry exactly the next offset."""
        kind = frame.get("type")
        if kind == "message":
            offset = frame["offset"]
            self.received += 1
            self.last_at = time.perf_counter()
            if offset != self.next_offset:
                what = "duplicate or out of order" if offset < self.next_offset else "gap"
                self.violations.append(f"subscriber {self.index}: {what}: got {offset}, expected {self.next_offset}")
            self.next_offset = max(self.next_offset, offset + 1)
            if offset >= self.expected:
                self.done.set()
        elif kind == "unsubscribed" or kind == "disconnect" or kind == "error":
            self.violations.append(f"subscriber {self.index}: {frame}")
            self.done.set()


async def read_subscriber(client: Client, sub: Subscriber) -> None:
    """Read a subscriber's frames until the connection ends (the run cancels it at the end)."""
    try:
        while True:
            frame = json.loads(await client.ws.recv())
            if frame == PING:
                await client.send(PONG)  # the server closes a silent socket (4004)
                continue
            sub.take(frame)
    except ConnectionClosed as exc:
        if not sub.done.is_set():
            sub.violations.append(f"subscriber {sub.index}: connection closed: {exc}")
            sub.done.set()


async def open_subscriber(url: str, token: str, index: int, total: int, gate: asyncio.Semaphore) -> tuple:
    """Connect, read `welcome`, subscribe: (client, subscriber) ready for the run."""
    async with gate:
        client = await Client.authenticated(url, token)
        reply = await client.request({"type": "subscribe", "id": index, "channel": CHANNEL})
        if reply.get("type") != "subscribed" or reply.get("offset") != 0:
            raise RuntimeError(f"subscriber {index}: unexpected reply {reply}")
        return client, Subscriber(index, total)


async def publish_all(client: Client, count: int, window: int) -> tuple[float, float, list[str]]:
    """Publish `count` messages, `window` in flight; returns (first send, last reply, problems)."""
    slots = asyncio.Semaphore(window)
    problems: list[str] = []
    replied = 0
    finished = asyncio.Event()
    last_reply = 0.0

    async def read_replies() -> None:
        """Count the `published` replies, freeing a window slot for each."""
        nonlocal replied, last_reply
        while replied < count:
            frame = await client.recv(60)
            if frame == PING:
                await client.send(PONG)
                continue
            if frame.get("type") != "published":
                problems.append(f"publisher: {frame}")
            replied += 1
            last_reply = time.perf_counter()
            slots.release()
        finished.set()

    reader = asyncio.ensure_future(read_replies())
    first = time.perf_counter()
    for n in range(1, count + 1):
        await slots.acquire()
        if reader.done():
            break
        await client.send({"type": "publish", "id": n, "channel": CHANNEL, "data": {"n": n, "text": "hello"}})
    await reader
    return first, last_reply, problems


async def run_engine(
    engine: str, args: argparse.Namespace, env: dict[str, str], tokens: list[str], log: Path
) -> dict[str, object]:
    """One daphne on this engine: subscribe, publish, wait for the deliveries; returns the figures."""
    server = DaphneServer(env, log, name=f"fanout-{engine}", args=("-v", "1")).start()
    clients: list[Client] = []
    readers: list[asyncio.Task] = []
    try:
        await server.wait_ready()
        gate = asyncio.Semaphore(20)
        opened = await asyncio.gather(
            *(
                open_subscriber(server.ws_url, tokens[i // args.per_user], i, args.messages, gate)
                for i in range(args.subscribers)
            )
        )
        clients = [client for client, _ in opened]
        subs = [sub for _, sub in opened]
        readers = [asyncio.ensure_future(read_subscriber(client, sub)) for client, sub in opened]
        publisher = await Client.authenticated(server.ws_url, tokens[-1])
        clients.append(publisher)

        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        first, last_reply, problems = await publish_all(publisher, args.messages, args.window)
        # Wait for every subscriber, giving up when nothing arrives for `--idle` seconds.
        while not all(sub.done.is_set() for sub in subs):
            newest = max([sub.last_at for sub in subs] + [last_reply])
            if time.perf_counter() - newest > args.idle:
                break
            pending = [asyncio.ensure_future(sub.done.wait()) for sub in subs if not sub.done.is_set()]
            _, still = await asyncio.wait(pending, timeout=1.0, return_when=asyncio.ALL_COMPLETED)
            for task in still:
                task.cancel()
        last_delivery = max(sub.last_at for sub in subs)
        server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
        violations = [v for sub in subs for v in sub.violations] + problems
        for sub in subs:
            if sub.next_offset <= args.messages and not sub.violations:
                violations.append(f"subscriber {sub.index}: stopped at offset {sub.next_offset - 1} of {args.messages}")
        delivered = sum(sub.received for sub in subs)
        span = max(last_delivery - first, 1e-9)
        return {
            "engine": engine,
            "publish_rate": args.messages / max(last_reply - first, 1e-9),
            "delivery_rate": delivered / span,
            "span": span,
            "server_cpu": server_cpu / span,
            "client_cpu": client_cpu / span,
            "delivered": delivered,
            "violations": violations,
            "server_problems": server.problems(),
        }
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        await server.aterminate()


def engine_env(engine: str, base: dict[str, str], redis_url: str) -> dict[str, str]:
    """The server environment on one engine."""
    env = dict(base)
    env["REDIS_URL"] = "" if engine == "memory" else redis_url
    env["REDIS_PREFIX"] = f"bench-fanout-{secrets.token_hex(4)}"
    return env


def print_table(args: argparse.Namespace, results: list[dict[str, object]]) -> None:
    """The results as a Markdown table."""
    print()
    print(
        f"subscribers: {args.subscribers}, messages: {args.messages}, window: {args.window}, per user: {args.per_user}"
    )
    print(
        "| engine | publications/s | deliveries/s | first publish -> last delivery | delivered | violations "
        "| server CPU | client CPU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        print(
            f"| {result['engine']} | {result['publish_rate']:.0f} | {result['delivery_rate']:.0f} | "
            f"{result['span']:.2f} s | {result['delivered']} / {args.subscribers * args.messages} | "
            f"{len(result['violations'])} | {result['server_cpu']:.0%} | {result['client_cpu']:.0%} |"
        )
    for result in results:
        for violation in result["violations"][:10]:
            print(f"  {result['engine']}: {violation}")
        for problem in result["server_problems"][:3]:
            print(f"  {result['engine']}: the server logged: {problem[:500]}")


def main(argv: list[str]) -> int:
    """Set up a database, users and Redis; run each engine within its time bound; print the table."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rt-fanout-") as workdir:
        private = None
        redis_url = args.redis_url if args.redis_url and redis_answers(args.redis_url) else ""
        if not redis_url and "redis" in args.engines:
            if find_redis_server() is None:
                print("no Redis (set --redis-url or install redis-server): skipping the Redis engine")
                args.engines = [engine for engine in args.engines if engine == "memory"]
            else:
                private, redis_url = start_private_redis(workdir)
                print(f"using a private redis-server at {redis_url}")
        try:
            key = secrets.token_urlsafe(40)
            base = server_env(
                database_url=f"sqlite:///{Path(workdir) / 'fanout.sqlite3'}",
                redis_url="",
                redis_prefix="bench-fanout",
                secret_key=key,
                signing_key=key,
                extra={
                    "REALTIME_RATE": 100000,
                    "REALTIME_RATE_BURST": 100000,
                    "REALTIME_PUBLISH_BYTES_PER_SECOND": 1 << 30,  # one socket publishes it all
                },
            )
            manage(base, "migrate", "--noinput", "-v", "0")
            users = math.ceil(args.subscribers / args.per_user) + 1  # the last one publishes
            tokens = json.loads(manage(base, "shell", "-c", MINT.replace("{users}", str(users))).splitlines()[-1])
            results = []
            for engine in args.engines:
                env = engine_env(engine, base, redis_url)
                log = Path(workdir) / f"server-{engine}.log"
                print(f"{engine}: running ...", flush=True)
                try:
                    result = asyncio.run(asyncio.wait_for(run_engine(engine, args, env, tokens, log), args.timeout))
                except TimeoutError:
                    print(f"{engine}: gave up after {args.timeout} s", file=sys.stderr)
                    return 2
                finally:
                    if redis_url and engine != "memory":
                        cleanup_redis(redis_url, env["REDIS_PREFIX"])
                results.append(result)
            print_table(args, results)
        finally:
            if private is not None:
                private.terminate()
                private.wait(timeout=10)
    return 1 if any(result["violations"] for result in results) else 0


def cleanup_redis(url: str, prefix: str) -> None:
    """Delete the run's keys from a Redis that outlives it."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
