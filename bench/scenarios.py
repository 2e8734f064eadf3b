"""The five scenarios, run by the orchestrator (bench/run.py) against one server with the load processes.

Each scenario gets a fresh server process (so one scenario's garbage, caches or queues never
weigh on the next), drives the load processes (`Workers`, see bench/loadgen.py) and returns
a flat dict of figures. What each one measures, and how, is in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import sqlite3
import statistics
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.targets import ROOT, BenchServer, Target
from tests.e2e.servers import proc_status_kib

BUCKET = loadgen.BUCKET


class WorkerError(RuntimeError):
    """A load process failed a request or died."""


class Workers:
    """The load processes (multiprocessing, spawn) and their request/reply pipes."""

    def __init__(self, count: int, on_progress: Callable[[str, int], None]) -> None:
        self.count = count
        self.on_progress = on_progress
        self.procs: list[multiprocessing.Process] = []
        self.conns: list[Any] = []
        self.pending: dict[int, asyncio.Future] = {}
        self.counts: list[dict[str, int]] = []
        self._rid = 0

    async def start(self) -> Workers:
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        for index in range(self.count):
            parent, child = context.Pipe()
            proc = context.Process(target=loadgen.worker_main, args=(child, index, str(ROOT)), daemon=True)
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
            self.counts.append({})
            loop.add_reader(parent.fileno(), self._readable, index)
        return self

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def _readable(self, index: int) -> None:
        conn = self.conns[index]
        try:
            while conn.poll():
                message = conn.recv()
                if "progress" in message:
                    name, count = message["progress"]
                    self.counts[index][name] = count
                    self.on_progress(name, sum(counts.get(name, 0) for counts in self.counts))
                    continue
                future = self.pending.pop(message["rid"], None)
                if future is not None and not future.done():
                    if "error" in message:
                        future.set_exception(WorkerError(message["error"]))
                    else:
                        future.set_result(message["reply"])
        except (EOFError, OSError) as exc:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            for future in list(self.pending.values()):
                if not future.done():
                    future.set_exception(WorkerError(f"load process {index} died ({exc!r})"))

    def reset_progress(self) -> None:
        for counts in self.counts:
            counts.clear()

    async def call(self, index: int, op: str, **kwargs: Any) -> Any:
        self._rid += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self._rid] = future
        self.conns[index].send({"op": op, "rid": self._rid, **kwargs})
        return await future

    async def each(self, op: str, per_worker: list[dict]) -> list[Any]:
        """The same request to every worker, with its own arguments; the replies in worker order."""
        return await asyncio.gather(*(self.call(i, op, **kwargs) for i, kwargs in enumerate(per_worker)))

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for index, conn in enumerate(self.conns):
            try:
                loop.remove_reader(conn.fileno())
                conn.send({"op": "exit", "rid": 0})
            except (OSError, ValueError):
                pass
            del index
        deadline = time.monotonic() + 10
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(3)
            if proc.is_alive():
                proc.kill()
                proc.join(3)
        for conn in self.conns:
            conn.close()
        self.procs, self.conns = [], []


@dataclass
class Context:
    """What a scenario works with."""

    target: Target
    server: BenchServer
    workers: Workers
    users: list[tuple[int, str]]  # (user id, access token); users[0] publishes, users[1] warms up
    per_user: int
    sizes: dict[str, Any]
    deadline: float  # wall clock: the scenario's time bound
    database: Path | None
    redis_pid: int | None
    show: Any  # the progress display
    publish_helper: Callable[[], Any] | None = None  # scenario 5: a process publishing server-side

    @property
    def base(self) -> str:
        return self.server.base_url

    @property
    def url(self) -> str:
        return loadgen.ws_url(self.target.kind, self.base)

    def clients(self, count: int) -> list[tuple[int, str]]:
        """`count` (user id, token) pairs, `per_user` sockets per user, from users[2] on."""
        needed = math.ceil(count / self.per_user)
        if needed > len(self.users) - 2:
            raise ValueError(f"{count} clients need {needed} users, the run minted {len(self.users) - 2}")
        return [self.users[2 + i // self.per_user] for i in range(count)]

    def split(self, items: list) -> list[list]:
        """`items` dealt out to the workers in turn."""
        return [items[i :: self.workers.count] for i in range(self.workers.count)]

    def remaining(self) -> float:
        return max(1.0, self.deadline - time.time())


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc/<pid>/stat), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float] | array, fraction: float) -> float | None:
    """The nearest-rank percentile, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def floats(blobs: list[bytes]) -> array:
    merged = array("d")
    for blob in blobs:
        merged.frombytes(blob)
    return merged


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def merge_stats(stats: list[dict]) -> dict:
    closed: Counter[str] = Counter()
    buckets: Counter[int] = Counter()
    for part in stats:
        closed.update(part["closed"])
        buckets.update({int(k): v for k, v in part["buckets"].items()})
    merged = {key: sum(part[key] for part in stats) for key in (
        "subscribers", "deliveries", "missing", "duplicates", "offset_gaps", "offset_repeats")}  # fmt: skip
    merged.update(
        closed=dict(closed),
        buckets=buckets,
        latencies=floats([part["latencies"] for part in stats]),
        last_measured=max(part["last_measured"] for part in stats),
    )
    return merged


async def connect_pool(ctx: Context, clients: list, channel: str | None, pool: str, name: str) -> dict:
    """Connect and subscribe `clients` from every worker at once (`keep`: the sockets stay open)."""
    ctx.workers.reset_progress()
    ctx.show.task(name, len(clients))
    concurrency = max(1, ctx.sizes["concurrency"] // ctx.workers.count)
    replies = await ctx.workers.each(
        "connect",
        [
            {"kind": ctx.target.kind, "url": ctx.url, "clients": part, "channel": channel,
             "concurrency": concurrency, "pool": pool, "keep": True}
            for part in ctx.split(clients)
        ],
    )  # fmt: skip
    errors: Counter[str] = Counter()
    for reply in replies:
        errors.update(reply["errors"])
    return {
        "opened": sum(reply["opened"] for reply in replies),
        "errors": dict(errors.most_common(5)),
        "error_count": sum(errors.values()),
        "latencies": floats([reply["latencies"] for reply in replies]),
        "first": min(reply["first"] for reply in replies),
        "last": max(reply["last"] for reply in replies),
    }


async def close_pool(ctx: Context, pool: str) -> None:
    await ctx.workers.each("close", [{"pool": pool}] * ctx.workers.count)


async def warm_up(ctx: Context, count: int) -> int:
    """A few connects (opened, subscribed, closed) before anything is measured: how many opened."""
    if not count:
        return 0
    reply = await ctx.workers.call(
        0, "connect", kind=ctx.target.kind, url=ctx.url, clients=[ctx.users[1]] * count, channel=None,
        concurrency=5, pool="warm", keep=False,
    )  # fmt: skip
    return reply["opened"]


def session_rows(database: Path | None) -> int | None:
    """Authenticated session rows (`realtime.Connection`) in the server's database, or None."""
    if database is None:
        return None
    try:
        with sqlite3.connect(database, timeout=20) as db:
            return db.execute("SELECT COUNT(*) FROM realtime_connection WHERE user_id IS NOT NULL").fetchone()[0]
    except sqlite3.Error:
        return None


# ------------------------------------------------------------------ (1) connects


async def scenario_connect(ctx: Context) -> dict:
    """N clients: handshake with a bearer JWT, welcome (session recorded), one subscribe (own user channel)."""
    count = ctx.sizes["connect"]
    warm = ctx.sizes["warmup_connects"]
    # Rows are written in the background, so the warm-up's may land after any count taken now:
    # count before it, and subtract its sockets once the graceful stop has written every row.
    rows_before = session_rows(ctx.database)
    warmed = await warm_up(ctx, warm)
    done = await connect_pool(ctx, ctx.clients(count), None, "s1", f"{ctx.target.key}: connect {count}")
    await close_pool(ctx, "s1")
    span = max(done["last"] - done["first"], 1e-9)
    result = {
        "clients": count,
        "connected": done["opened"],
        "failed": done["error_count"],
        "errors": done["errors"],
        "seconds": round(span, 3),
        "connects_per_s": round(done["opened"] / span, 1),
        "p50_ms": ms(percentile(done["latencies"], 0.5)),
        "p99_ms": ms(percentile(done["latencies"], 0.99)),
        "max_ms": ms(max(done["latencies"], default=None)),
        "concurrency": ctx.sizes["concurrency"],
    }
    if ctx.target.kind == "ours":
        await ctx.server.aterminate()  # a graceful stop: every row is written and closed
        rows = session_rows(ctx.database)
        result["sessions_recorded"] = None if rows is None or rows_before is None else rows - rows_before - warmed
    return result


# ------------------------------------------------------------------ (2) fixed-rate fan-out


async def scenario_fanout(ctx: Context) -> dict:
    """S subscribers of one channel; one publisher at R publications/s for D s (after 1 s of warm-up)."""
    subs, rate, duration = ctx.sizes["fanout_subscribers"], ctx.sizes["fanout_rate"], ctx.sizes["fanout_seconds"]
    channel = "bench:fanout"
    await warm_up(ctx, ctx.sizes["warmup_connects"])
    opened = await connect_pool(ctx, ctx.clients(subs), channel, "s2", f"{ctx.target.key}: {subs} subscribers")
    if opened["opened"] < subs:
        raise RuntimeError(f"only {opened['opened']} of {subs} subscribed: {opened['errors']}")
    warmup = max(1, int(rate * ctx.sizes["fanout_warmup"]))
    count = int(rate * duration)
    total = warmup + count
    ctx.workers.reset_progress()
    ctx.show.task(f"{ctx.target.key}: {rate}/s for {duration} s to {subs}", subs * total, name="delivered")
    start_at = time.time() + 0.3
    user, token = ctx.users[0]
    cpu0, t0 = cpu_seconds(ctx.server.pid), time.time()
    published = await ctx.workers.call(
        0, "publish_rate", kind=ctx.target.kind, url=ctx.url, user=user, token=token, channel=channel, rate=rate,
        warmup=warmup, count=count, start_at=start_at, drain=max(1.0, min(ctx.sizes["drain"], ctx.remaining() - 10)),
    )  # fmt: skip
    deadline = min(ctx.deadline - 5, published["last_sent"] + ctx.sizes["drain"])
    await ctx.workers.each(
        "wait_delivered", [{"pool": "s2", "expect": total, "idle": ctx.sizes["idle"], "deadline": deadline}]
        * ctx.workers.count
    )  # fmt: skip
    cpu1, t1 = cpu_seconds(ctx.server.pid), time.time()
    stats = merge_stats(await ctx.workers.each("stats", [{"pool": "s2", "expect": total}] * ctx.workers.count))
    await close_pool(ctx, "s2")
    lat = stats["latencies"]
    first = published["first_measured"]
    # From the first measured publication to the last delivery of one, plus one publication interval
    # (N publications at R/s span (N - 1) / R seconds): a server that keeps up scores subscribers x rate.
    span = max(stats["last_measured"] - first, 0.0) + 1 / rate if len(lat) else None
    expected = subs * total
    return {
        "subscribers": subs,
        "rate": rate,
        "seconds": duration,
        "publications": total,
        "measured_publications": count,
        "published_ok": published["acks"].get("ok", 0),
        "unacknowledged": total - sum(published["acks"].values()),
        "publish_errors": {k: v for k, v in published["acks"].items() if k != "ok"},
        "publisher_most_late_ms": ms(published["most_late"]),
        "publisher_closed": published["closed"],
        "expected_deliveries": expected,
        "deliveries": stats["deliveries"],
        "offered_per_s": subs * rate,
        "achieved_per_s": round(len(lat) / span, 1) if span else 0.0,
        "p50_ms": ms(percentile(lat, 0.5)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "max_ms": ms(max(lat, default=None)),
        "lost": stats["missing"],
        "lost_pct": round(100 * stats["missing"] / expected, 2),
        "duplicates": stats["duplicates"],
        "offset_gaps": stats["offset_gaps"] if ctx.target.kind == "ours" else None,
        "offset_repeats": stats["offset_repeats"] if ctx.target.kind == "ours" else None,
        "closed": stats["closed"],
        "server_cpu_pct": None if cpu0 is None or cpu1 is None else round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
    }


# ------------------------------------------------------------------ (3) as fast as delivered


async def scenario_max(ctx: Context) -> dict:
    """S subscribers; one publisher with at most W publications in flight; deliveries/s and server CPU per delivery."""
    subs, window = ctx.sizes["max_subscribers"], ctx.sizes["window"]
    warm_s, duration = ctx.sizes["max_warmup"], ctx.sizes["max_seconds"]
    channel = "bench:max"
    await warm_up(ctx, ctx.sizes["warmup_connects"])
    opened = await connect_pool(ctx, ctx.clients(subs), channel, "s3", f"{ctx.target.key}: {subs} subscribers")
    if opened["opened"] < subs:
        raise RuntimeError(f"only {opened['opened']} of {subs} subscribed: {opened['errors']}")
    ctx.workers.reset_progress()
    ctx.show.task(f"{ctx.target.key}: max rate, window {window}, {duration} s", None, name="delivered")
    start_at = math.ceil((time.time() + 0.3) / BUCKET) * BUCKET
    measure_from = start_at + warm_s
    measure_to = measure_from + duration
    user, token = ctx.users[0]
    publisher = asyncio.ensure_future(
        ctx.workers.call(
            0, "publish_window", kind=ctx.target.kind, url=ctx.url, user=user, token=token, channel=channel,
            window=window, pool="s3", start_at=start_at, measure_from=measure_from, measure_to=measure_to,
            stall=ctx.sizes["stall"],
        )
    )  # fmt: skip
    pids = {"server": ctx.server.pid, "redis": ctx.redis_pid, **{f"load{i}": p for i, p in enumerate(ctx.workers.pids)}}
    try:
        await asyncio.sleep(max(0.0, measure_from - time.time()))
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        await asyncio.sleep(max(0.0, measure_to - time.time()))
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        elapsed = time.time() - measure_from
        published = await publisher
    finally:
        publisher.cancel()
    sent = published["sent"]
    await ctx.workers.each(
        "wait_delivered",
        [{"pool": "s3", "expect": sent, "idle": ctx.sizes["idle"], "deadline": time.time() + ctx.sizes["idle"] * 2}]
        * ctx.workers.count,
    )
    stats = merge_stats(await ctx.workers.each("stats", [{"pool": "s3", "expect": sent}] * ctx.workers.count))
    await close_pool(ctx, "s3")
    first, last = round(measure_from / BUCKET), round(measure_to / BUCKET)
    in_window = sum(n for bucket, n in stats["buckets"].items() if first <= bucket < last)
    cpu = {
        name: None if before[name] is None or after[name] is None else after[name] - before[name] for name in pids
    }
    load_cpu = sum(v for k, v in cpu.items() if k.startswith("load") and v is not None)
    lat = stats["latencies"]
    return {
        "subscribers": subs,
        "window": window,
        "seconds": duration,
        "publications": sent,
        "deliveries_in_window": in_window,
        "deliveries_per_s": round(in_window / duration, 1),
        "publications_per_s": round(in_window / duration / subs, 1),
        "server_cpu_us_per_delivery": round(1e6 * cpu["server"] / in_window, 1) if in_window else None,
        "server_cpu_pct": round(100 * cpu["server"] / elapsed, 1) if cpu["server"] is not None else None,
        "redis_cpu_pct": round(100 * cpu["redis"] / elapsed, 1) if cpu["redis"] is not None else None,
        "load_cpu_pct": round(100 * load_cpu / elapsed, 1),
        "p50_ms": ms(percentile(lat, 0.5)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "lost": stats["missing"],
        "duplicates": stats["duplicates"],
        "offset_gaps": stats["offset_gaps"] if ctx.target.kind == "ours" else None,
        "offset_repeats": stats["offset_repeats"] if ctx.target.kind == "ours" else None,
        "stalls": published["stalls"],
        "publisher_closed": published["closed"],
        "publish_errors": {k: v for k, v in published["acks"].items() if k != "ok"},
        "closed": stats["closed"],
    }


# ------------------------------------------------------------------ (4) memory per idle connection


async def scenario_memory(ctx: Context) -> dict:
    """Server RSS before and after N idle connections (authenticated, one subscription each)."""
    count = ctx.sizes["idle_connections"]
    await warm_up(ctx, ctx.sizes["warmup_connects"])
    await asyncio.sleep(ctx.sizes["settle"])
    before = proc_status_kib(ctx.server.pid)
    opened = await connect_pool(ctx, ctx.clients(count), None, "s4", f"{ctx.target.key}: {count} idle connections")
    await asyncio.sleep(ctx.sizes["settle"])
    after = proc_status_kib(ctx.server.pid)
    peak = proc_status_kib(ctx.server.pid, "VmHWM")
    await close_pool(ctx, "s4")
    return {
        "connections": count,
        "opened": opened["opened"],
        "failed": opened["error_count"],
        "errors": opened["errors"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_peak_kib": peak,
        "kib_per_connection": round((after - before) / opened["opened"], 2) if opened["opened"] else None,
    }


# ------------------------------------------------------------------ (5) reconnect storm


async def scenario_storm(ctx: Context) -> dict:
    """N subscribed realtime_client clients; kill -9 the server, publish meanwhile, start it again on the same
    port; time until every client is back (resumed) with every publication."""
    count, before, during = ctx.sizes["storm_clients"], ctx.sizes["storm_before"], ctx.sizes["storm_during"]
    channel = "bench:storm"
    ctx.workers.reset_progress()
    ctx.show.task(f"{ctx.target.key}: {count} clients subscribe", count, name="connected")
    concurrency = max(1, ctx.sizes["concurrency"] // ctx.workers.count)
    opened = await ctx.workers.each(
        "storm_open",
        [{"url": ctx.url, "clients": part, "channel": channel, "concurrency": concurrency}
         for part in ctx.split(ctx.clients(count))],
    )  # fmt: skip
    subscribed = sum(reply["subscribed"] for reply in opened)
    if subscribed < count:
        errors: Counter[str] = Counter()
        for reply in opened:
            errors.update(reply["errors"])
        raise RuntimeError(f"only {subscribed} of {count} subscribed: {dict(errors.most_common(3))}")
    helper = ctx.publish_helper()
    try:
        await helper.ready()
        await helper.publish(before)
        await asyncio.sleep(ctx.sizes["settle"])  # delivered before the kill
        killed_at = time.time()
        ctx.server.kill9()
        await helper.publish(during)
        await ctx.workers.each("storm_expect", [{"expect": before + during, "since": killed_at}] * ctx.workers.count)
        down = time.time() - killed_at
        ctx.workers.reset_progress()
        ctx.show.task(f"{ctx.target.key}: restart, {count} clients come back", count, name="resumed")
        restart_at = time.time()
        ctx.server.start(same_port=True)
        await ctx.server.wait_ready()
        ready_at = time.time()
        deadline = min(ctx.deadline - 5, restart_at + ctx.sizes["storm_timeout"])
        replies = await ctx.workers.each("storm_wait", [{"deadline": deadline}] * ctx.workers.count)
    finally:
        await helper.close()
    await ctx.workers.each("storm_close", [{}] * ctx.workers.count)
    complete = [t for reply in replies for t in reply["complete_at"]]
    done = [t - restart_at for t in complete if t is not None]
    back = [t - restart_at for reply in replies for t in reply["reconnected_at"] if t is not None]
    states: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for reply in replies:
        states.update(reply["states"])
        codes.update(reply["close_codes"])
    return {
        "clients": count,
        "published_before": before,
        "published_while_down": during,
        "down_seconds": round(down, 2),
        "ready_after_s": round(ready_at - restart_at, 2),
        "complete": len(done),
        "incomplete": count - len(done),
        "all_back_s": round(max(done), 2) if len(done) == count else None,
        "p50_back_s": round(percentile(done, 0.5), 2) if done else None,
        "p99_back_s": round(percentile(done, 0.99), 2) if done else None,
        "p50_reconnect_s": round(statistics.median(back), 2) if back else None,
        "resumed": sum(reply["resumed"] for reply in replies),
        "not_resumed": sum(reply["not_resumed"] for reply in replies),
        "recovered": sum(reply["recovered"] for reply in replies),
        "not_recovered": sum(reply["not_recovered"] for reply in replies),
        "missing": sum(reply["missing"] for reply in replies),
        "duplicates": sum(reply["duplicates"] for reply in replies),
        "client_states": dict(states),
        "close_codes_after_kill": dict(codes),
    }


SCENARIOS: dict[int, tuple[str, Callable]] = {
    1: ("connect", scenario_connect),
    2: ("fan-out at a fixed rate", scenario_fanout),
    3: ("fan-out as fast as delivered", scenario_max),
    4: ("memory per idle connection", scenario_memory),
    5: ("reconnect storm", scenario_storm),
}
