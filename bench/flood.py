"""How long a valid handshake takes while the server is flooded.

Starts one real server process (daphne, or uvicorn with `--server uvicorn`) of a checkout
(`--source`, default this one: pass a `git worktree` of an older commit to measure the
"before"), on a fresh SQLite database with one user, and runs each flood for `--seconds`:

- `anonymous`: sockets that never send credentials, opened at `--rate` per second from one
  address and each held open until the server closes it;
- `anonymous-spread`: the same from many addresses (a random `X-Forwarded-For` per socket,
  with TRUSTED_PROXY_COUNT=1 on the server, so the per-address cap does not apply);
- `login`: `--concurrency` clients posting wrong passwords to `POST /api/auth/token/`
  without pause, from many addresses.

Meanwhile a prober opens, every `--probe-every` seconds, a socket with a valid token in its
`Authorization` header and times it until `welcome` (given up after `--probe-timeout`).
Prints, per flood, the probes that got in and their median, p95 and worst time, and writes
the figures as JSON (`--out`). Timings are what this script measures; no test asserts them.

    .venv/bin/python bench/flood.py                      # this checkout
    git worktree add /tmp/before <commit>; ln -s $PWD/.venv /tmp/before/.venv
    .venv/bin/python bench/flood.py --source /tmp/before --label before
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import DaphneServer, UvicornServer, server_env  # noqa: E402

USERNAME, PASSWORD = "flood-probe", "probe-pass-123"
FLOODS = ("anonymous", "anonymous-spread", "login")
# At most this many attacker sockets or logins at once, by flood. Anonymous sockets are opened at
# --rate per second and held for AUTH_TIMEOUT (10 s), so about 10 x rate at once: over the default
# MAX_UNAUTHENTICATED (1000) at the default rate.
CONCURRENCY = {"anonymous": 3000, "anonymous-spread": 3000, "login": 150}


def random_address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


class Flood:
    """One flood against the server at `base` (http://host:port), and its prober."""

    def __init__(self, base: str, kind: str, args: argparse.Namespace, token: str) -> None:
        self.base, self.kind, self.args, self.token = base, kind, args, token
        self.ws = base.replace("http", "ws", 1) + "/ws/"
        self.stop = asyncio.Event()
        self.concurrency = args.concurrency or CONCURRENCY[kind]
        self.attacks = 0  # attacker sockets opened or logins posted
        self.refused = 0  # of those, turned away by the server (close, 429, 503)

    async def run(self) -> dict:
        """Flood from another process (so that its own load never delays the probes) and probe."""
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--attack", self.kind, "--base", self.base, "--rate", str(self.args.rate),
            "--concurrency", str(self.concurrency), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(self.args.warmup)  # let the flood build up before the first probe
        probes = await self._probe_until(time.monotonic() + self.args.seconds)
        attacker.terminate()
        counts = json.loads((await attacker.communicate())[0] or b"{}")
        self.attacks, self.refused = counts.get("attacks", 0), counts.get("refused", 0)
        ok = sorted(t for t in probes if t is not None)
        return {
            "flood": self.kind,
            "probes": len(probes),
            "probes_ok": len(ok),
            "median_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
            "p95_ms": round(ok[int(0.95 * (len(ok) - 1))] * 1000, 1) if ok else None,
            "max_ms": round(ok[-1] * 1000, 1) if ok else None,
            "attacks": self.attacks,
            "attacks_refused": self.refused,
        }

    async def _probe_until(self, deadline: float) -> list[float | None]:
        results: list[float | None] = []
        pending: list[asyncio.Task] = []
        while time.monotonic() < deadline:
            pending.append(asyncio.create_task(self._probe()))
            await asyncio.sleep(self.args.probe_every)
        results.extend(await asyncio.gather(*pending))
        return results

    async def _probe(self) -> float | None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.args.probe_timeout):
                headers = {"Authorization": f"Bearer {self.token}"}
                async with websockets.connect(self.ws, additional_headers=headers, open_timeout=None) as ws:
                    while json.loads(await ws.recv())["type"] != "welcome":
                        pass
                    return time.monotonic() - started
        except (TimeoutError, OSError, websockets.WebSocketException):
            return None

    async def _attacker(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=60) as http:
            while not self.stop.is_set():
                await self._bad_login(http)

    async def _opener(self) -> None:
        """Open anonymous sockets at `--rate` per second whatever becomes of them (the same attack
        against every version), each held until the server closes it; at most `concurrency` at once."""
        held: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not self.stop.is_set():
                if len(held) < self.concurrency:
                    task = asyncio.create_task(self._anonymous_socket())
                    held.add(task)
                    task.add_done_callback(held.discard)
                next_at += 1 / self.args.rate
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)

    async def _bad_login(self, http: httpx.AsyncClient) -> None:
        headers = {"X-Forwarded-For": random_address()}
        body = {"username": random.choice([USERNAME, f"guess-{random.randrange(10**6)}"]), "password": "wrong"}
        self.attacks += 1
        try:
            response = await http.post("/api/auth/token/", json=body, headers=headers)
        except httpx.HTTPError:
            self.refused += 1
            return
        if response.status_code in (429, 503):
            self.refused += 1

    async def _anonymous_socket(self) -> None:
        headers = {"X-Forwarded-For": random_address()} if self.kind == "anonymous-spread" else {}
        self.attacks += 1
        try:
            async with websockets.connect(self.ws, additional_headers=headers, open_timeout=30) as ws:
                await ws.wait_closed()  # held until the server closes it (AUTH_TIMEOUT)
        except (OSError, websockets.WebSocketException, TimeoutError):
            self.refused += 1  # the handshake was refused (a cap) or failed


async def attack(args: argparse.Namespace) -> None:
    """`--attack KIND`: flood `--base` until SIGTERM, then print the counts as JSON."""
    import signal

    flood = Flood(args.base, args.attack, args, token="")
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, flood.stop.set)
    if flood.kind == "login":
        attackers = [asyncio.create_task(flood._attacker()) for _ in range(flood.concurrency)]
    else:
        attackers = [asyncio.create_task(flood._opener())]
    await flood.stop.wait()
    for task in attackers:
        task.cancel()
    await asyncio.gather(*attackers, return_exceptions=True)
    print(json.dumps({"attacks": flood.attacks, "refused": flood.refused}), flush=True)


def prepare(source: Path, env: dict[str, str]) -> None:
    """Migrate the fresh database and create the probe's user (in the checkout under test)."""
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=source, env=env, check=True)
    create = (
        "from django.contrib.auth import get_user_model as g;"
        f"g().objects.filter(username={USERNAME!r}).exists() or "
        f"g().objects.create_user({USERNAME!r}, password={PASSWORD!r})"
    )
    subprocess.run([*manage, "shell", "-c", create], cwd=source, env=env, check=True)


async def main(args: argparse.Namespace) -> list[dict]:
    source = args.source.resolve()
    results = []
    with tempfile.TemporaryDirectory(prefix="flood-") as tmp:
        env = server_env(
            database_url=args.database_url or f"sqlite:///{tmp}/flood.sqlite3", redis_url="", redis_prefix="flood",
            secret_key=secrets.token_urlsafe(40), signing_key=secrets.token_urlsafe(40),
            extra={"TRUSTED_PROXY_COUNT": 1},
        )  # fmt: skip
        prepare(source, env)
        for kind in args.floods:
            if args.server == "uvicorn":
                cls, quiet = UvicornServer, ("--log-level", "warning")
            else:
                cls, quiet = DaphneServer, ("-v", "0")
            server = cls(env, Path(tmp) / f"{kind}.log", name=f"{args.label}-{kind}", args=quiet)
            server.workdir = source
            server.start()
            try:
                await server.wait_ready()
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    reply = await http.post("/api/auth/token/", json={"username": USERNAME, "password": PASSWORD})
                    reply.raise_for_status()
                result = await Flood(server.url, kind, args, reply.json()["access"]).run()
            finally:
                server.terminate()
            result.update(label=args.label, server=args.server, concurrency=args.concurrency or CONCURRENCY[kind])
            results.append(result)
            print(
                f"{args.label:>8} {kind:<17} valid handshakes {result['probes_ok']}/{result['probes']}"
                f"  median {result['median_ms']} ms  p95 {result['p95_ms']} ms  max {result['max_ms']} ms"
                f"  ({result['attacks']} attacks, {result['attacks_refused']} turned away)",
                flush=True,
            )
    return results


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    parser.add_argument("--label", default="now", help="the name of this run in the output")
    parser.add_argument("--server", choices=("daphne", "uvicorn"), default="daphne")
    parser.add_argument("--database-url", help="an empty database to use instead of a fresh SQLite file")
    parser.add_argument("--floods", nargs="+", choices=FLOODS, default=list(FLOODS))
    parser.add_argument("--concurrency", type=int, help=f"attacker sockets or logins at once (default {CONCURRENCY})")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each flood is probed")
    parser.add_argument("--rate", type=float, default=150.0, help="anonymous sockets opened per second")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of flood before the first probe")
    parser.add_argument("--probe-every", type=float, default=0.25)
    parser.add_argument("--probe-timeout", type=float, default=15.0)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--attack", choices=FLOODS, help=argparse.SUPPRESS)  # the attacker process
    parser.add_argument("--base", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    if arguments.attack:
        asyncio.run(attack(arguments))
        sys.exit(0)
    figures = asyncio.run(main(arguments))
    if arguments.out:
        arguments.out.write_text(json.dumps(figures, indent=2) + "\n")
