"""The benchmark's load-generating worker processes: clients of every server under test.

`bench/run.py` starts one to a few of these (`multiprocessing`, spawn) per scenario and
drives them over a pipe: each request is a dict `{"op": ..., ...}` answered by one reply
`{"reply": ...}` or `{"error": ...}`; while an operation runs the worker also sends
`{"progress": (name, count)}` a few times a second. A worker holds its sockets between
requests (in named pools), so a scenario can connect subscribers, then publish, then
collect what each subscriber saw.

Every server speaks its own wire format, behind one small adapter each:

- `ours`: this project's protocol (docs/protocol.md): `Authorization: Bearer` at the
  handshake, `welcome`, `subscribe`/`subscribed`, `publish`/`published`, `message` with
  `epoch`/`offset`, server `ping` answered with `pong`.
- `baseline`: bench/baseline's subset of the same JSON shapes, without offsets.
- `socketio`: Socket.IO v5 over Engine.IO v4 on a plain WebSocket (`40{auth}`, `42[event]`,
  acks `43<id>[...]`, ping `2` answered with `3`).

Every publication's `data` carries `s` (its sequence number, from 1), `t` (the
publisher's wall clock when it sent it, `time.time()`) and `m` (1 when it is measured,
0 for warm-up). A subscriber takes its receive time when its frame is decoded; latency
is that minus `t` (one machine, one clock). Losses are counted by `s` on every server,
and on ours also by `offset` (a gap or a repeat in the offsets is counted on its own).

Scenario 5 uses the project's own Python client (`realtime_client`), which reconnects,
resumes and recovers by itself; the hot paths use raw `websockets` connections.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import os
import resource
import signal
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

OPEN_TIMEOUT = 30.0  # a bound on one handshake (a loaded server answers slowly), never a measurement
REPLY_TIMEOUT = 30.0
BUCKET = 0.1  # seconds: deliveries are counted per bucket of wall-clock time
PROGRESS_EVERY = 0.25
TEXT = "the quick brown fox jumps over the lazy dog, again and again, 0123456789"  # ~70 bytes of payload
MESSAGE, ACK, PING, OTHER = "message", "ack", "ping", "other"


class Refused(Exception):
    """The server refused a handshake or a request."""


# ------------------------------------------------------------------ wire formats


class JsonProto:
    """This project's protocol, and the baseline's subset of it (`offsets` False)."""

    pong = '{"type": "pong"}'

    def __init__(self, offsets: bool) -> None:
        self.offsets = offsets

    async def open(self, url: str, token: str) -> Any:
        ws = await ws_connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=OPEN_TIMEOUT,
            close_timeout=2,
            proxy=None,
            compression=None,
            ping_interval=None,
            max_size=None,
        )
        try:
            await self._until(ws, lambda f: f.get("type") == "welcome", "welcome")
        except BaseException:
            await ws.close()
            raise
        return ws

    async def subscribe(self, ws: Any, channel: str, rid: int) -> dict:
        await ws.send(json.dumps({"type": "subscribe", "id": rid, "channel": channel}))
        return await self._until(ws, lambda f: f.get("id") == rid, "subscribed")

    async def _until(self, ws: Any, done: Any, what: str) -> dict:
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                frame = json.loads(await ws.recv())
                kind = frame.get("type")
                if kind == "ping":
                    await ws.send(self.pong)
                elif kind in ("disconnect", "error") and frame.get("id") is None:
                    raise Refused(f"{kind} {frame.get('code')} {frame.get('reason', '')}".strip())
                elif done(frame):
                    if kind == "error":
                        raise Refused(f"error {frame.get('code')}")
                    if what != "welcome" and kind != what:
                        raise Refused(f"{what} expected, got {kind}")
                    return frame

    def publish_frame(self, channel: str, data: dict, rid: int) -> str:
        return json.dumps({"type": "publish", "id": rid, "channel": channel, "data": data})

    def decode(self, text: str) -> tuple[str, Any, Any]:
        """(MESSAGE, data, offset) | (ACK, id, error code or None) | (PING, None, None) | (OTHER, frame, None)."""
        frame = json.loads(text)
        kind = frame.get("type")
        if kind == "message":
            return MESSAGE, frame.get("data"), frame.get("offset")
        if kind == "published":
            return ACK, frame.get("id"), None
        if kind == "error" and frame.get("id") is not None:
            return ACK, frame.get("id"), frame.get("code") or "error"
        if kind == "ping":
            return PING, None, None
        return OTHER, frame, None


class SocketIOProto:
    """Socket.IO v5 on Engine.IO v4, WebSocket transport only (no HTTP long-polling)."""

    offsets = False
    pong = "3"

    async def open(self, url: str, token: str) -> Any:
        ws = await ws_connect(
            url, open_timeout=OPEN_TIMEOUT, close_timeout=2, proxy=None, compression=None, ping_interval=None
        )
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                opened = await ws.recv()
                if not opened.startswith("0"):
                    raise Refused(f"engine.io open expected, got {opened[:80]!r}")
                await ws.send("40" + json.dumps({"token": token}))
                while True:
                    text = await ws.recv()
                    if text == "2":
                        await ws.send("3")
                    elif text.startswith("40"):
                        return ws
                    elif text.startswith("44"):
                        raise Refused(f"connect refused: {text[2:80]}")
        except BaseException:
            await ws.close()
            raise

    async def subscribe(self, ws: Any, channel: str, rid: int) -> dict:
        await ws.send(f"42{rid}" + json.dumps(["subscribe", {"channel": channel}]))
        prefix = f"43{rid}["
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                text = await ws.recv()
                if text == "2":
                    await ws.send("3")
                elif text.startswith(prefix):
                    return json.loads(text[len(prefix) - 1 :])[0]

    def publish_frame(self, channel: str, data: dict, rid: int) -> str:
        return f"42{rid}" + json.dumps(["publish", {"channel": channel, "data": data}])

    def decode(self, text: str) -> tuple[str, Any, Any]:
        if text.startswith("42["):
            event, payload = json.loads(text[2:])[:2]
            if event == "message":
                return MESSAGE, payload.get("data"), None
            return OTHER, payload, None
        if text.startswith("43"):
            end = 2
            while text[end].isdigit():
                end += 1
            reply = json.loads(text[end:])
            ok = bool(reply) and isinstance(reply[0], dict) and reply[0].get("ok")
            return ACK, int(text[2:end]), None if ok else "error"
        if text == "2":
            return PING, None, None
        return OTHER, text, None


def protocol(kind: str) -> JsonProto | SocketIOProto:
    if kind == "socketio":
        return SocketIOProto()
    return JsonProto(offsets=kind == "ours")


def ws_url(kind: str, base: str) -> str:
    """The WebSocket URL of a server at `base` (`ws://127.0.0.1:<port>`)."""
    return f"{base}/socket.io/?EIO=4&transport=websocket" if kind == "socketio" else f"{base}/ws/"


# ------------------------------------------------------------------ what subscribers received


@dataclass
class Sub:
    """One subscriber socket and what it received."""

    ws: Any
    user: int
    seen: bytearray = field(default_factory=bytearray)  # seen[s] = times publication s arrived
    count: int = 0
    last_offset: int | None = None
    offset_gaps: int = 0
    offset_repeats: int = 0
    closed: str = ""


class Tracker:
    """What a pool of subscribers received: per-publication counts, latencies, deliveries per time bucket."""

    def __init__(self) -> None:
        self.subs: list[Sub] = []
        self.latencies = array("d")  # seconds, measured publications only
        self.buckets: Counter[int] = Counter()
        self.deliveries = 0
        self.last_measured = 0.0  # wall clock of the last delivery of a measured publication
        self.window: dict[int, int] | None = None  # seq -> local subscribers still to receive it
        self.freed: asyncio.Queue[int] | None = None

    def record(self, sub: Sub, data: Any, offset: Any, now: float) -> None:
        if not isinstance(data, dict):
            return
        seq = data.get("s", 0)
        if seq >= len(sub.seen):
            sub.seen.extend(bytes(seq + 256 - len(sub.seen)))
        if sub.seen[seq] < 255:
            sub.seen[seq] += 1
        sub.count += 1
        self.deliveries += 1
        self.buckets[int(now / BUCKET)] += 1
        if data.get("m"):
            self.latencies.append(now - data["t"])
            self.last_measured = max(self.last_measured, now)
        if offset is not None:
            if sub.last_offset is not None:
                if offset > sub.last_offset + 1:
                    sub.offset_gaps += 1
                elif offset <= sub.last_offset:
                    sub.offset_repeats += 1
            sub.last_offset = offset
        if self.window is not None:
            left = self.window.get(seq)
            if left is not None:
                if left <= 1:
                    del self.window[seq]
                    self.freed.put_nowait(seq)
                else:
                    self.window[seq] = left - 1

    def stats(self, expect: int) -> dict:
        """Losses against publications 1..`expect`, duplicates, offset checks, latencies, buckets."""
        missing = duplicates = 0
        for sub in self.subs:
            seen = sub.seen[1 : expect + 1]
            missing += expect - len(seen) + seen.count(0)
            duplicates += sum(n - 1 for n in seen if n > 1)
        return {
            "subscribers": len(self.subs),
            "deliveries": self.deliveries,
            "missing": missing,
            "duplicates": duplicates,
            "offset_gaps": sum(sub.offset_gaps for sub in self.subs),
            "offset_repeats": sum(sub.offset_repeats for sub in self.subs),
            "closed": Counter(sub.closed for sub in self.subs if sub.closed),
            "latencies": self.latencies.tobytes(),
            "buckets": dict(self.buckets),
            "last_measured": self.last_measured,
        }


def closed_reason(exc: ConnectionClosed) -> str:
    """`closed 4013 slow` from how a connection ended (1006: no close frame)."""
    if exc.rcvd is None:
        return "closed 1006"
    return f"closed {exc.rcvd.code} {exc.rcvd.reason}".strip()


# ------------------------------------------------------------------ the worker


class Worker:
    """Serves the orchestrator's requests on one asyncio loop."""

    def __init__(self, conn: Any, index: int) -> None:
        self.conn = conn
        self.index = index
        self.pools: dict[str, Tracker] = {}
        self.readers: list[asyncio.Task] = []
        self.tasks: set[asyncio.Task] = set()
        self.stop = asyncio.Event()
        self.publisher: tuple[Any, asyncio.Task | None] | None = None
        self.storm: Storm | None = None
        self._last_progress = 0.0

    def progress(self, name: str, count: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self.conn.send({"progress": (name, count)})

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._readable)
        await self.stop.wait()
        loop.remove_reader(self.conn.fileno())
        await self.close_all()

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                request = self.conn.recv()
                task = asyncio.ensure_future(self.handle(request))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        except (EOFError, OSError):  # the orchestrator is gone
            self.stop.set()

    async def handle(self, request: dict) -> None:
        op, rid = request.pop("op"), request.pop("rid")
        try:
            reply = await getattr(self, f"op_{op}")(**request)
        except Exception as exc:  # reported to the orchestrator, which fails the scenario
            self.conn.send({"rid": rid, "error": f"worker {self.index}: {op}: {type(exc).__name__}: {exc}"})
        else:
            self.conn.send({"rid": rid, "reply": reply})

    # -------------------------------------------------------------- connect and subscribe

    async def op_connect(
        self,
        kind: str,
        url: str,
        clients: list[tuple[int, str]],
        channel: str | None,
        concurrency: int,
        pool: str,
        keep: bool,
    ) -> dict:
        """Open a socket per `(user id, token)`, authenticate, subscribe once (to `channel`, or to the
        user's own `user:<id>` channel when None); time each from the first byte to `subscribed`."""
        proto = protocol(kind)
        tracker = self.pools.setdefault(pool, Tracker())
        gate = asyncio.Semaphore(concurrency)
        latencies = array("d")
        errors: Counter[str] = Counter()
        opened: list[Sub] = []
        done = 0

        async def one(user: int, token: str) -> None:
            nonlocal done
            async with gate:
                started = time.perf_counter()
                ws = None
                try:
                    ws = await proto.open(url, token)
                    await proto.subscribe(ws, channel or f"user:{user}", 1)
                except Exception as exc:  # counted; the scenario goes on
                    errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                    if ws is not None:
                        await ws.close()
                    return
                latencies.append(time.perf_counter() - started)
                sub = Sub(ws, user)
                opened.append(sub)
                if keep:  # read at once: the server's heartbeat wants answers while the others connect
                    tracker.subs.append(sub)
                    self.readers.append(asyncio.ensure_future(self.read(proto, sub, tracker)))
                done += 1
                self.progress("connected", done)

        first = time.time()
        await asyncio.gather(*(one(user, token) for user, token in clients))
        last = time.time()
        self.progress("connected", done, force=True)
        if not keep:
            await asyncio.gather(*(sub.ws.close() for sub in opened), return_exceptions=True)
        return {"opened": len(opened), "errors": dict(errors), "latencies": latencies.tobytes(), "first": first,
                "last": last}

    async def read(self, proto: JsonProto | SocketIOProto, sub: Sub, tracker: Tracker) -> None:
        """A subscriber's reader: record each publication, answer pings, note how it ended."""
        ws, decode, record = sub.ws, proto.decode, tracker.record
        try:
            async for text in ws:
                now = time.time()
                kind, payload, offset = decode(text)
                if kind == MESSAGE:
                    record(sub, payload, offset, now)
                elif kind == PING:
                    await ws.send(proto.pong)
                elif kind == OTHER and isinstance(payload, dict) and payload.get("type") in ("disconnect",
                                                                                            "unsubscribed"):
                    sub.closed = f"{payload.get('type')} {payload.get('code') or payload.get('reason')}"
        except ConnectionClosed as exc:
            if not self.stop.is_set():
                sub.closed = sub.closed or closed_reason(exc)

    async def op_close(self, pool: str) -> dict:
        tracker = self.pools.pop(pool, None)
        if tracker is None:
            return {"closed": 0}
        for sub in tracker.subs:
            sub.closed = sub.closed or "by the benchmark"
        await asyncio.gather(*(sub.ws.close() for sub in tracker.subs), return_exceptions=True)
        return {"closed": len(tracker.subs)}

    async def op_stats(self, pool: str, expect: int) -> dict:
        return self.pools[pool].stats(expect)

    async def op_wait_delivered(self, pool: str, expect: int, idle: float, deadline: float) -> dict:
        """Wait until every subscriber of `pool` has publications 1..`expect`, no delivery came for `idle`
        seconds, or the wall clock passes `deadline`."""
        tracker = self.pools[pool]
        target = expect * len(tracker.subs)
        last_count, last_change = -1, time.monotonic()
        while time.time() < deadline:
            got = sum(min(sub.count, expect) for sub in tracker.subs)
            self.progress("delivered", tracker.deliveries)
            if got >= target and all(sub.count >= expect for sub in tracker.subs):
                break
            if tracker.deliveries != last_count:
                last_count, last_change = tracker.deliveries, time.monotonic()
            elif time.monotonic() - last_change > idle:
                break
            await asyncio.sleep(0.05)
        self.progress("delivered", tracker.deliveries, force=True)
        return {"deliveries": tracker.deliveries}

    # -------------------------------------------------------------- publishing

    async def open_publisher(self, kind: str, url: str, user: int, token: str) -> tuple[Any, Any]:
        proto = protocol(kind)
        ws = await proto.open(url, token)
        return proto, ws

    async def op_publish_rate(
        self, kind: str, url: str, user: int, token: str, channel: str, rate: float, warmup: int, count: int,
        start_at: float, drain: float,
    ) -> dict:
        """Open-loop: publication n (from 1) is sent at `start_at + (n - 1) / rate` whatever the replies;
        the first `warmup` are not measured. Then the replies are awaited up to `drain` seconds (the
        socket stays open: a publication still queued in the server is not dropped by the benchmark)."""
        proto, ws = await self.open_publisher(kind, url, user, token)
        acks: Counter[str] = Counter()
        total = warmup + count

        async def replies() -> None:
            async for text in ws:
                kind_, rid, error = proto.decode(text)
                if kind_ == ACK:
                    acks[error or "ok"] += 1
                    if sum(acks.values()) >= total:
                        return
                elif kind_ == PING:
                    await ws.send(proto.pong)

        reader = asyncio.ensure_future(replies())
        sent = 0
        late = 0.0
        closed = ""
        last_sent = time.time()
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            for n in range(1, total + 1):
                due = start_at + (n - 1) / rate
                wait = due - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    late = max(late, -wait)
                data = {"s": n, "t": time.time(), "m": int(n > warmup), "text": TEXT}
                await ws.send(proto.publish_frame(channel, data, n))
                sent += 1
            last_sent = time.time()
            try:
                await asyncio.wait_for(asyncio.shield(reader), drain)
            except TimeoutError:
                pass
        except ConnectionClosed as exc:  # the server closed the publisher: counted, the deliveries still are
            closed = closed_reason(exc)
        finally:
            reader.cancel()
            await ws.close()
        return {"sent": sent, "acks": dict(acks), "most_late": late, "first_measured": start_at + warmup / rate,
                "last_sent": last_sent, "closed": closed}

    async def op_publish_window(
        self, kind: str, url: str, user: int, token: str, channel: str, window: int, pool: str, start_at: float,
        measure_from: float, measure_to: float, stall: float,
    ) -> dict:
        """Closed-loop: at most `window` publications in flight, one counted out when every subscriber of
        this worker's `pool` has it (or after `stall` seconds: counted as a stall). Publishes from
        `start_at` to `measure_to`; those sent within [measure_from, measure_to) are the measured ones."""
        proto, ws = await self.open_publisher(kind, url, user, token)
        tracker = self.pools[pool]
        tracker.window, tracker.freed = {}, asyncio.Queue()
        local = len(tracker.subs)
        acks: Counter[str] = Counter()
        in_flight: dict[int, float] = {}  # seq -> monotonic deadline
        stalls = sent = 0

        async def replies() -> None:
            async for text in ws:
                kind_, _, error = proto.decode(text)
                if kind_ == ACK:
                    acks[error or "ok"] += 1
                elif kind_ == PING:
                    await ws.send(proto.pong)

        reader = asyncio.ensure_future(replies())
        closed = ""
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            while time.time() < measure_to:
                while len(in_flight) >= window:
                    oldest = min(in_flight.values())
                    try:
                        seq = await asyncio.wait_for(tracker.freed.get(), max(0.001, oldest - time.monotonic()))
                        in_flight.pop(seq, None)
                    except TimeoutError:
                        for seq, limit in list(in_flight.items()):
                            if limit <= time.monotonic():
                                del in_flight[seq]
                                tracker.window.pop(seq, None)
                                stalls += 1
                while not tracker.freed.empty():
                    in_flight.pop(tracker.freed.get_nowait(), None)
                sent += 1
                now = time.time()
                tracker.window[sent] = local
                in_flight[sent] = time.monotonic() + stall
                data = {"s": sent, "t": now, "m": int(measure_from <= now < measure_to), "text": TEXT}
                await ws.send(proto.publish_frame(channel, data, sent))
            # The last ones in flight arrive (or stall) before the publisher's socket closes.
            limit = time.monotonic() + stall
            while in_flight and time.monotonic() < limit:
                try:
                    in_flight.pop(await asyncio.wait_for(tracker.freed.get(), limit - time.monotonic()), None)
                except TimeoutError:
                    break
            stalls += len(in_flight)
            await asyncio.sleep(0.2)  # the last replies
        except ConnectionClosed as exc:
            closed = closed_reason(exc)
        finally:
            tracker.window = None
            reader.cancel()
            await ws.close()
        return {"sent": sent, "acks": dict(acks), "stalls": stalls, "closed": closed}

    # -------------------------------------------------------------- scenario 5: the reconnect storm

    async def op_storm_open(self, url: str, clients: list[tuple[int, str]], channel: str, concurrency: int) -> dict:
        self.storm = Storm(url, channel)
        return await self.storm.open(clients, concurrency, self.progress)

    async def op_storm_expect(self, expect: int, since: float) -> dict:
        self.storm.expect(expect, since)
        return {"clients": len(self.storm.clients)}

    async def op_storm_wait(self, deadline: float) -> dict:
        return await self.storm.wait(deadline, self.progress)

    async def op_storm_close(self) -> dict:
        if self.storm is not None:
            await self.storm.close()
            self.storm = None
        return {}

    # -------------------------------------------------------------- the end

    async def op_exit(self) -> dict:
        self.stop.set()
        return {}

    async def close_all(self) -> None:
        for task in self.readers:
            task.cancel()
        sockets = [sub.ws for tracker in self.pools.values() for sub in tracker.subs]
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        if self.storm is not None:
            await self.storm.close()


class StormClient:
    """One `realtime_client.Client` and what it went through after the kill."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seen: set[int] = set()
        self.duplicates = 0
        self.subscribed = asyncio.Event()
        self.reconnected_at: float | None = None  # first `connected` after the kill
        self.resumed: bool | None = None
        self.recovered: bool | None = None
        self.complete_at: float | None = None
        self.states: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()  # close codes seen after the kill


class Storm:
    """Subscribed `realtime_client` clients: each reconnects, resumes and recovers on its own."""

    def __init__(self, url: str, channel: str) -> None:
        self.url, self.channel = url, channel
        self.clients: list[StormClient] = []
        self.expected = 0
        self.since = float("inf")

    async def open(self, clients: list[tuple[int, str]], concurrency: int, progress: Any) -> dict:
        from realtime_client import Client

        connect = functools.partial(ws_connect, proxy=None, compression=None)
        gate = asyncio.Semaphore(concurrency)
        errors: Counter[str] = Counter()

        async def one(token: str) -> None:
            async with gate:
                client = Client(self.url, token=token, connect=connect, request_timeout=OPEN_TIMEOUT)
                entry = StormClient(client)
                sub = client.subscribe(self.channel)
                sub.on("publication", functools.partial(self.on_publication, entry))
                sub.on("subscribed", functools.partial(self.on_subscribed, entry))
                client.on("state", functools.partial(self.on_state, entry))
                self.clients.append(entry)
                try:
                    await asyncio.wait_for(client.connect(), OPEN_TIMEOUT)
                    await asyncio.wait_for(entry.subscribed.wait(), OPEN_TIMEOUT)
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                progress("connected", sum(1 for c in self.clients if c.subscribed.is_set()))

        await asyncio.gather(*(one(token) for _, token in clients))
        return {"subscribed": sum(1 for c in self.clients if c.subscribed.is_set()), "errors": dict(errors)}

    def on_publication(self, entry: StormClient, pub: Any) -> None:
        seq = pub.data.get("s") if isinstance(pub.data, dict) else None
        if seq in entry.seen:
            entry.duplicates += 1
        entry.seen.add(seq)
        self._check(entry)

    def on_subscribed(self, entry: StormClient, event: Any) -> None:
        entry.subscribed.set()
        if time.time() >= self.since and event.recovering:
            entry.recovered = bool(event.recovered)

    def on_state(self, entry: StormClient, change: Any) -> None:
        entry.states[str(change.state)] += 1
        if change.code is not None and time.time() >= self.since:
            entry.codes[f"{change.code} {change.reason}"[:60]] += 1
        if str(change.state) == "connected" and time.time() >= self.since and entry.reconnected_at is None:
            entry.reconnected_at = time.time()
            entry.resumed = bool(change.resumed)
            self._check(entry)

    def _check(self, entry: StormClient) -> None:
        if (
            entry.complete_at is None
            and entry.reconnected_at is not None
            and self.expected
            and len(entry.seen.intersection(range(1, self.expected + 1))) == self.expected
        ):
            entry.complete_at = time.time()

    def expect(self, expected: int, since: float) -> None:
        """From now on: publications 1..`expected` are due; connections made after `since` count as back."""
        self.expected, self.since = expected, since

    async def wait(self, deadline: float, progress: Any) -> dict:
        while time.time() < deadline:
            done = sum(1 for c in self.clients if c.complete_at is not None)
            progress("resumed", done)
            if done == len(self.clients):
                break
            await asyncio.sleep(0.05)
        progress("resumed", sum(1 for c in self.clients if c.complete_at is not None), True)
        expected = set(range(1, self.expected + 1))
        return {
            "clients": len(self.clients),
            "complete_at": [c.complete_at for c in self.clients],
            "reconnected_at": [c.reconnected_at for c in self.clients],
            "resumed": sum(1 for c in self.clients if c.resumed),
            "not_resumed": sum(1 for c in self.clients if c.resumed is False),
            "recovered": sum(1 for c in self.clients if c.recovered),
            "not_recovered": sum(1 for c in self.clients if c.recovered is False),
            "missing": sum(len(expected - c.seen) for c in self.clients),
            "duplicates": sum(c.duplicates for c in self.clients),
            "states": dict(sum((c.states for c in self.clients), Counter())),
            "close_codes": dict(sum((c.codes for c in self.clients), Counter())),
        }

    async def close(self) -> None:
        await asyncio.gather(*(c.client.disconnect() for c in self.clients), return_exceptions=True)


# ------------------------------------------------------------------ process entry point


def _die_with_parent() -> None:
    """Linux: SIGTERM when the orchestrator dies (no orphaned load processes)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def worker_main(conn: Any, index: int, root: str) -> None:
    """Entry point of a load process (multiprocessing, spawn)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's: it stops us
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(name, None)  # 127.0.0.1 only, never through a proxy
    sys.path.insert(0, str(Path(root) / "clients" / "python"))
    try:
        asyncio.run(Worker(conn, index).serve())
    finally:
        conn.close()
