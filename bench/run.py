"""The benchmark: this project against a plain Channels baseline (and python-socketio), in one run.

    make bench                                   # = .venv/bin/python bench/run.py, full sizes
    .venv/bin/python bench/run.py --quick        # a small smoke run (a minute or so)
    .venv/bin/python bench/run.py --scenarios 1,3 --server daphne,uvicorn --engine redis,memory

It starts Redis if needed (REDIS_URL when it answers, else a private redis-server), makes a
temporary SQLite database with users and their access tokens, then for each scenario and
each server under test starts that server (one process, 127.0.0.1, a free port), drives the
load processes (bench/loadgen.py), and stops everything again. It prints a table with the
ratio of each server to the baseline and writes `bench/results/<timestamp>.json`, a PNG
chart beside it (when matplotlib is installed) and the servers' logs
(`<timestamp>-logs/`). Every scenario is bounded by `--timeout`; Ctrl-C stops everything.

Scenarios (docs/performance.md says what each measures and how):
  1  connect N clients: JWT, session recorded, one subscribe; connects/s, p50/p99 connect->subscribed
  2  S subscribers, R publications/s for D s: deliveries/s achieved, p50/p99 latency, lost
  3  S subscribers, publish as fast as delivered (W in flight): deliveries/s, server CPU per delivery
  4  server RSS per idle connection at N connections
  5  reconnect storm (this project only): kill -9, restart, time until every client has resumed
     with every publication made while the server was down
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import redis  # noqa: E402
from local_redis import find_redis_server, redis_answers, start_private_redis  # noqa: E402

from bench import report  # noqa: E402
from bench.loadgen import TEXT  # noqa: E402
from bench.scenarios import SCENARIOS, Context, Workers  # noqa: E402
from bench.targets import BenchServer, Target, missing_modules, target_env  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FULL = {
    "connect": 2000,
    "concurrency": 100,  # handshakes in flight at once, over all load processes
    "fanout_subscribers": 1000,
    "fanout_rate": 20,
    "fanout_seconds": 10,
    "fanout_warmup": 1.0,  # seconds of publications before the measured ones
    "drain": 60.0,  # at most this long after the last publication for the deliveries to arrive
    "idle": 5.0,  # ... or this long without any delivery
    "max_subscribers": 100,
    "window": 50,
    "max_warmup": 2.0,
    "max_seconds": 10.0,
    "stall": 5.0,  # a publication not delivered within this long frees its window slot (counted)
    "idle_connections": 5000,
    "settle": 3.0,
    "storm_clients": 5000,
    "storm_before": 5,
    "storm_during": 10,
    "storm_timeout": 90.0,
    "warmup_connects": 10,
}
QUICK = {
    **FULL,
    "connect": 20,
    "concurrency": 10,
    "fanout_subscribers": 20,
    "fanout_seconds": 1,
    "fanout_warmup": 0.25,
    "drain": 15.0,
    "idle": 3.0,
    "max_subscribers": 10,
    "window": 10,
    "max_warmup": 0.3,
    "max_seconds": 1.0,
    "idle_connections": 40,
    "settle": 0.5,
    "storm_clients": 20,
    "storm_before": 3,
    "storm_during": 5,
    "storm_timeout": 30.0,
    "warmup_connects": 3,
}
OVERRIDES = {  # option -> size
    "clients": "connect",
    "concurrency": "concurrency",
    "subscribers": "fanout_subscribers",
    "rate": "fanout_rate",
    "seconds": "fanout_seconds",
    "max_subscribers": "max_subscribers",
    "window": "window",
    "max_seconds": "max_seconds",
    "idle_connections": "idle_connections",
    "storm_clients": "storm_clients",
}
MINT = """
import json
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken
User = get_user_model()
users = [User(username=f"bench{i}") for i in range({users})]
for user in users:
    user.set_unusable_password()
User.objects.bulk_create(users)
users = User.objects.filter(username__startswith="bench").order_by("id")
print(json.dumps([[user.id, str(AccessToken.for_user(user))] for user in users]))
"""
# Scenario 5's publisher: a Django process on the server's settings that publishes server side
# (history in Redis, then the fan-out), so that publications happen while the server is dead.
PUBLISHER = """
import json, sys, time
from realtime.pubsub.publishing import publish_sync
print("ready", flush=True)
seq = 0
for line in sys.stdin:
    for _ in range(int(line)):
        seq += 1
        published = publish_sync("bench:storm", {"s": seq, "t": time.time(), "m": 1, "text": TEXT})
    print(json.dumps({"seq": seq, "offset": published.offset}), flush=True)
""".replace("TEXT", repr(TEXT))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--scenarios", default="1,2,3,4,5", help="comma-separated scenario numbers (default all)")
    parser.add_argument("--targets", default="ours,baseline,socketio", help="of ours, baseline, socketio")
    parser.add_argument("--server", default="daphne", help="ours under daphne and/or uvicorn (comma-separated)")
    parser.add_argument(
        "--engine", default="redis",
        help="ours on Redis, on a Redis Cluster (three masters of its own on free ports: `cluster`) "
        "and/or on the embedded in-memory engine (no REDIS_URL), comma-separated",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=None, help="bound on one scenario, s (300; quick 60)")
    parser.add_argument("--workers", type=int, default=2, help="load processes (1-4; the machine has 2 cores)")
    parser.add_argument("--per-user", type=int, default=10, help="sockets per user (<= MAX_CONNECTIONS_PER_USER)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""), help="a Redis on 127.0.0.1")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON, chart and logs go")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--profile", action="store_true",
        help="record each server with py-spy through scenarios 1-4 (raw stacks in the logs folder, top frames in "
        "the JSON); the figures of a profiled run are a little lower",
    )  # fmt: skip
    sizes = parser.add_argument_group("sizes (defaults: the issue's; --quick: tiny)")
    sizes.add_argument("--clients", type=int, help="S1 clients (2000)")
    sizes.add_argument("--concurrency", type=int, help="handshakes in flight (100)")
    sizes.add_argument("--subscribers", type=int, help="S2 subscribers (1000)")
    sizes.add_argument("--rate", type=float, help="S2 publications/s (20)")
    sizes.add_argument("--seconds", type=float, help="S2 measured seconds (10)")
    sizes.add_argument("--max-subscribers", type=int, help="S3 subscribers (100)")
    sizes.add_argument("--window", type=int, help="S3 publications in flight (50)")
    sizes.add_argument("--max-seconds", type=float, help="S3 measured seconds (10)")
    sizes.add_argument("--idle-connections", type=int, help="S4 connections (5000)")
    sizes.add_argument("--storm-clients", type=int, help="S5 clients (2000)")
    args = parser.parse_args(argv)
    try:
        args.scenarios = sorted({int(s) for s in args.scenarios.split(",") if s.strip()})
    except ValueError:
        parser.error("--scenarios takes numbers, e.g. 1,3")
    if not args.scenarios or set(args.scenarios) - set(SCENARIOS):
        parser.error(f"--scenarios must name some of {', '.join(map(str, SCENARIOS))}")
    for option, allowed in (("targets", {"ours", "baseline", "socketio"}), ("server", {"daphne", "uvicorn"}),
                            ("engine", {"redis", "memory", "cluster"})):  # fmt: skip
        values = [v.strip() for v in getattr(args, option).split(",") if v.strip()]
        if not values or set(values) - allowed:
            parser.error(f"--{option} must name some of {', '.join(sorted(allowed))}")
        setattr(args, option, list(dict.fromkeys(values)))
    if not 1 <= args.workers <= 4:
        parser.error("--workers must be 1-4")
    if not 1 <= args.per_user <= 20:
        parser.error("--per-user must be 1-20 (the default MAX_CONNECTIONS_PER_USER)")
    if args.redis_url and not args.redis_url.startswith(("redis://127.0.0.1", "redis://localhost")):
        parser.error("--redis-url must point at 127.0.0.1")
    args.sizes = dict(QUICK if args.quick else FULL)
    for option, size in OVERRIDES.items():
        if getattr(args, option) is not None:
            if getattr(args, option) <= 0:
                parser.error(f"--{option.replace('_', '-')} must be positive")
            args.sizes[size] = getattr(args, option)
    if args.timeout is None:
        args.timeout = 60.0 if args.quick else 300.0
    args.py_spy = None
    if args.profile:
        args.py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if args.py_spy is None:
            parser.error("--profile needs py-spy (pip install py-spy)")
    return args


# ------------------------------------------------------------------ progress


class Show:
    """Progress bars with rich when it is installed and stdout is a terminal; plain lines otherwise."""

    def __init__(self) -> None:
        self.progress = None
        self.task_id = None
        self.name = ""
        if sys.stdout.isatty():
            try:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:
                pass
            else:
                self.progress = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
                )
                self.progress.start()

    def task(self, description: str, total: int | None, name: str = "connected") -> None:
        self.name = name
        if self.progress is None:
            print(f"  {description} ...", flush=True)
            return
        if self.task_id is not None:
            self.progress.remove_task(self.task_id)
        self.task_id = self.progress.add_task(description, total=total)

    def update(self, name: str, count: int) -> None:
        if self.progress is not None and self.task_id is not None and name == self.name:
            self.progress.update(self.task_id, completed=count)

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def stop(self) -> None:
        if self.progress is not None:
            if self.task_id is not None:
                self.progress.remove_task(self.task_id)
            self.progress.stop()


# ------------------------------------------------------------------ setup


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


class PublishHelper:
    """Scenario 5's server-side publisher (`manage.py shell -c`), started before the kill."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def ready(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "shell", "--no-imports", "-v", "0", "-c", PUBLISHER, cwd=ROOT, env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await self._line("ready")

    async def publish(self, count: int) -> dict:
        self.proc.stdin.write(f"{count}\n".encode())
        await self.proc.stdin.drain()
        return json.loads(await self._line("{"))

    async def _line(self, start: str) -> str:
        """The next stdout line starting with `start` (other lines skipped); fails after 60 s or at exit."""
        async with asyncio.timeout(60):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    self.proc.kill()
                    problem = (await self.proc.stderr.read()).decode(errors="replace")[-2000:]
                    raise RuntimeError(f"the server-side publisher failed: {problem}")
                if line.startswith(start):
                    return line

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def machine() -> dict[str, Any]:
    """What the run ran on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    versions = {}
    for name in ("Django", "channels", "daphne", "channels-redis", "redis", "websockets", "uvicorn",
                 "python-socketio", "python-engineio", "PyJWT"):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_mib": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()),
        "packages": versions,
    }


def busy_processes() -> list[str]:
    """Other test or benchmark processes on the machine (the machine is shared): noted in the results."""
    try:
        out = subprocess.run(["pgrep", "-af", "pytest|daphne|uvicorn"], capture_output=True, text=True).stdout
    except OSError:
        return []
    mine = {str(os.getpid())}
    return [line[:200] for line in out.splitlines() if line.split(" ", 1)[0] not in mine]


def targets_of(args: argparse.Namespace, has_redis: bool, has_cluster: bool = False) -> tuple[list[Target], list[str]]:
    targets, notes = [], []
    for kind in args.targets:
        if kind == "ours":
            for server in args.server:
                for engine in args.engine:
                    if engine == "redis" and not has_redis:
                        notes.append(f"ours-{server}-redis: skipped, no Redis")
                        continue
                    if engine == "cluster" and not has_cluster:
                        notes.append(f"ours-{server}-cluster: skipped, no Redis Cluster")
                        continue
                    targets.append(Target("ours", server, engine))
        elif kind == "baseline":
            targets.append(Target("baseline", "daphne", "core" if has_redis else "memory"))
        else:
            targets.append(Target("socketio", "uvicorn", "redis-manager" if has_redis else "memory"))
    kept = []
    for target in targets:
        missing = missing_modules(target)
        if missing:
            notes.append(
                f"{target.key}: skipped, {', '.join(missing)} not installed (pip install -r requirements-bench.txt)"
            )
        else:
            kept.append(target)
    return kept, notes


def applies(target: Target, scenario: int) -> str:
    """Why `scenario` does not apply to `target` ("" when it does)."""
    if scenario == 5 and target.kind != "ours":
        return "no session resume"
    if scenario == 5 and target.backend == "memory":
        return "needs Redis (the in-memory engine dies with the process)"
    if scenario in (4, 5) and target.backend == "cluster":
        return "measured on one Redis (the Cluster run is for deliveries and connects)"
    return ""


def one_line(number: int, target: Target, entry: dict) -> str:
    if entry["status"] != "ok":
        return f"S{number} {target.key}: {entry['status']} {entry.get('error', '')[:200]}"
    shown = [
        f"{title.split(' ', 1)[1]} {fmt.format(entry[field])}"
        for s, field, title, fmt, _ in report.COLUMNS
        if s == number and isinstance(entry.get(field), int | float)
    ]
    extra = [f"{field} {entry[field]}" for field in ("lost", "missing", "failed", "incomplete") if entry.get(field)]
    return f"S{number} {target.key}: " + ", ".join(shown + extra)


# ------------------------------------------------------------------ the run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.show = Show()
        self.workdir = Path(tempfile.mkdtemp(prefix="rt-bench-"))
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.logs = args.out / f"{self.stamp}-logs"
        self.redis_proc: subprocess.Popen | None = None
        self.redis_url = ""
        self.redis_pid: int | None = None
        self.cluster: Any = None  # tests/topologies.ClusterTopology, for `--engine cluster`
        self.secret = secrets.token_urlsafe(40)
        self.template = self.workdir / "template.sqlite3"
        self.users: list[tuple[int, str]] = []
        self.workers: Workers | None = None

    def start_redis(self) -> None:
        url = self.args.redis_url
        if url and redis_answers(url):
            self.redis_url = url
            with contextlib.suppress(redis.RedisError, KeyError):  # on 127.0.0.1: its pid is one of ours
                self.redis_pid = int(redis.Redis.from_url(url).info("server")["process_id"])
            self.show.line(f"Redis: {url}")
        elif find_redis_server() is None:
            self.show.line("Redis: none (install redis-server or set REDIS_URL): only the in-memory setups run")
        else:
            self.redis_proc, self.redis_url = start_private_redis(str(self.workdir))
            self.redis_pid = self.redis_proc.pid
            self.show.line(f"Redis: a private redis-server at {self.redis_url}")

    def start_cluster(self) -> None:
        """Three cluster-enabled redis-servers of this run, no replicas (tests/topologies.py makes them)."""
        from tests.topologies import ClusterTopology, missing_binaries

        if missing_binaries():
            self.show.line(f"Redis Cluster: not started ({missing_binaries()})")
            return
        self.cluster = ClusterTopology(self.workdir / "cluster", masters=3, replicas_per_master=0).start()
        self.show.line(f"Redis Cluster: three masters of this run at {self.cluster.url}")

    def prepare_database(self, users: int) -> None:
        env = target_env(
            Target("ours", "daphne", "memory"), database_url=f"sqlite:///{self.template}", redis_url="",
            prefix="bench", secret=self.secret,
        )  # fmt: skip
        manage(env, "migrate", "--noinput", "-v", "0")
        out = manage(env, "shell", "-c", MINT.replace("{users}", str(users)))
        self.users = [tuple(pair) for pair in json.loads(out.strip().splitlines()[-1])]
        with sqlite3.connect(self.template) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def restart_workers(self) -> None:
        if self.workers is not None:
            await self.workers.stop()
        self.workers = await Workers(self.args.workers, self.show.update).start()

    async def run_one(self, target: Target, number: int) -> dict:
        """One scenario against a fresh server process of `target`."""
        args = self.args
        name = f"{target.key}-s{number}"
        database = None
        database_url = "sqlite:///" + str(self.workdir / "unused.sqlite3")
        if target.kind == "ours":
            database = self.workdir / f"{name}.sqlite3"
            shutil.copyfile(self.template, database)
            database_url = f"sqlite:///{database}"
        # Unique per run (two runs may start in the same second): runs sharing a Redis must not share
        # keys, connection slots or fan-out channels.
        prefix = f"bench-{self.stamp}-{os.getpid()}-{name}"
        redis_url = self.cluster.url if target.backend == "cluster" else self.redis_url
        env = target_env(target, database_url=database_url, redis_url=redis_url, prefix=prefix,
                         secret=self.secret)  # fmt: skip
        server = BenchServer(target, env, self.logs / f"{name}.log")
        ctx = Context(
            target=target, server=server, workers=self.workers, users=self.users, per_user=args.per_user,
            sizes=args.sizes, deadline=time.time() + args.timeout, database=database, redis_pid=self.redis_pid,
            show=self.show, publish_helper=lambda: PublishHelper(env),
        )  # fmt: skip
        started = time.time()
        entry: dict[str, Any] = {"status": "ok"}
        timing: dict[str, float] = {}
        profiler = None
        try:
            server.start()
            await asyncio.wait_for(server.wait_ready(), min(60.0, args.timeout))
            timing["ready"] = time.time() - started
            if args.py_spy and number != 5:
                profiler = Profiler(args.py_spy, server.pid, self.logs / f"{name}.pyspy.txt")
            entry.update(await asyncio.wait_for(SCENARIOS[number][1](ctx), max(1.0, ctx.deadline - time.time())))
        except TimeoutError:
            entry = {"status": "timeout", "error": f"not done within --timeout {args.timeout:.0f} s"}
            await self.restart_workers()
        except Exception as exc:
            entry = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            await self.restart_workers()
        finally:
            if profiler is not None:
                entry["profile"] = await asyncio.to_thread(profiler.stop)
            stopping = time.time()
            await server.aterminate()
            timing["stop"] = time.time() - stopping
            if self.redis_url and self.redis_proc is None:
                cleanup_redis(self.redis_url, prefix)
        entry["server_problems"] = [problem[:2000] for problem in server.problems()[:5]]
        entry["wall_seconds"] = round(time.time() - started, 1)
        entry["server_start_stop_s"] = [round(timing.get("ready", -1), 2), round(timing["stop"], 2)]
        return entry

    async def run(self) -> dict:
        args = self.args
        document: dict[str, Any] = {
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, "bench/run.py", *sys.argv[1:]]),
            "quick": args.quick,
            "machine": machine(),
            "other_processes_at_start": busy_processes(),
            "sizes": args.sizes | {"workers": args.workers, "per_user": args.per_user, "timeout": args.timeout},
            "targets": [],
            "notes": [],
            "results": {},
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        if "cluster" in args.engine:
            self.start_cluster()
        targets, notes = targets_of(args, bool(self.redis_url), self.cluster is not None)
        for note in notes:
            self.show.line(note)
        document["notes"] += notes
        document["targets"] = [{"key": t.key, "label": t.label, "kind": t.kind, "server": t.server,
                                "backend": t.backend} for t in targets]  # fmt: skip
        if self.redis_url:
            with contextlib.suppress(redis.RedisError):
                document["machine"]["redis"] = redis.Redis.from_url(self.redis_url).info("server")["redis_version"]
        sizes = args.sizes
        biggest = max(sizes["connect"], sizes["fanout_subscribers"], sizes["max_subscribers"],
                      sizes["idle_connections"], sizes["storm_clients"])  # fmt: skip
        self.show.line("Setting up: a migrated SQLite database, users and their access tokens ...")
        self.prepare_database(math.ceil(biggest / args.per_user) + 2)
        await self.restart_workers()
        for number in args.scenarios:
            self.show.line(f"Scenario {number}: {SCENARIOS[number][0]}")
            for target in targets:
                results = document["results"].setdefault(target.key, {})
                why = applies(target, number)
                if why:
                    results[str(number)] = {"status": "skipped", "reason": why}
                    continue
                results[str(number)] = entry = await self.run_one(target, number)
                self.show.line("  " + one_line(number, target, entry))
        document["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        document["machine"]["loadavg_end"] = list(os.getloadavg())
        document["other_processes_at_end"] = busy_processes()
        document["summary"] = report.summary(document)
        return document

    async def close(self) -> None:
        if self.workers is not None:
            await self.workers.stop()
        self.show.stop()
        if self.cluster is not None:
            self.cluster.stop()
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            try:
                self.redis_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.redis_proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


PLUMBING = ("(<frozen", "(asyncio/", "(twisted/", "(daphne/cli.py", "(daphne/__main__", "(daphne/server.py)",
            "(uvicorn/main.py", "(uvicorn/server.py", "(click/", "(selectors.py", "(threading.py", "(runpy")


class Profiler:
    """py-spy sampling one server process (100 Hz, busy threads only) until `stop()`."""

    def __init__(self, py_spy: str, pid: int, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [py_spy, "record", "-p", str(pid), "-o", str(path), "-f", "raw", "-r", "100", "--nonblocking"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> dict:
        """Stop (SIGINT: py-spy writes its file) and summarise: the frames with most samples, own and total."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return profile_summary(self.path)


def profile_summary(path: Path, top: int = 15) -> dict:
    """From py-spy's raw output (`frame;frame;... count` per line): the top frames by own and by total samples."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {"file": str(path), "samples": 0, "error": "py-spy wrote nothing"}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_frame(frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + n

    def best(counts: dict[str, int]) -> list:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [[frame, round(100 * n / samples, 1)] for frame, n in ranked]

    # Totals without the event loop's and the server's own plumbing, which every stack goes through.
    total = {frame: n for frame, n in total.items() if not any(part in frame for part in PLUMBING)}
    return {"file": str(path), "samples": samples, "top_own_pct": best(own), "top_total_pct": best(total)}


def _frame(frame: str) -> str:
    """`handle (realtime/socket/consumer.py:120)` -> `handle (realtime/socket/consumer.py)`: one entry per function."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def cleanup_redis(url: str, prefix: str) -> None:
    """Delete one server's keys from a Redis that outlives the run."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    except redis.RedisError:
        pass
    finally:
        client.close()


async def amain(args: argparse.Namespace) -> dict:
    main_task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    bench = Bench(args)
    try:
        document = await bench.run()
    finally:
        await bench.close()
    json_path = args.out / f"{bench.stamp}.json"
    document["files"] = {"json": str(json_path), "logs": str(bench.logs)}
    if not args.no_chart:
        png_path = args.out / f"{bench.stamp}.png"
        why = report.write_chart(document, png_path)
        if why:
            print(why)
        else:
            document["files"]["chart"] = str(png_path)
    report.write_json(document, json_path)
    return document


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        document = asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped: every server and load process was stopped", file=sys.stderr)
        return 130
    print()
    print(report.markdown_table(document))
    print("\n(N×) = the figure divided by the baseline's. – = does not apply.")
    for line in report.problems(document):
        print("  " + line)
    for note in document["notes"]:
        print("  " + note)
    print("\n" + "\n".join(f"{kind}: {path}" for kind, path in document["files"].items()))
    entries = [entry for scenarios in document["results"].values() for entry in scenarios.values()]
    failed = any(entry.get("status") in ("error", "timeout") for entry in entries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
