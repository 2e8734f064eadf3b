"""The Redis engine on a Redis Cluster: every channel's keys in one hash slot, fan-out on sharded pub/sub.

What changes from `realtime.engine.redis` (whose scripts it runs):

- Keys carry their channel, user or session as a hash tag, `<prefix>:<kind>:{<name>}`, so that all of
  one channel's keys (its stream, history, presence, fan-out) share a slot and each Lua step runs on
  one node. Channel names, user keys and session ids hold no braces, and neither may REDIS_PREFIX.
- The server instance that holds a channel's stream is read (INFO `run_id`) by every stream script
  instead of cached in `<prefix>:server`: a key cached on a master would reach its replica, and a
  promoted replica would then vouch for data it may not have. The scripts know a Cluster by the
  `:!:` in the server key they are given (`server_key_of`).
- Fan-out is sharded pub/sub: the publish script SPUBLISHes on its channel's slot, so a publication
  travels only within the shard that owns the channel, and each process listens (SSUBSCRIBE) on the
  shards of the channels it serves (`ClusterListener`). Control events have one topic, on one shard.
- The publish quota is its own step on the user's slot before the publish (two slots, two steps);
  the steps that took several channels or users at once take them one by one, concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError  # noqa: A004 - redis-py's, not the builtin

from realtime.core.redis_urls import parse_cluster_url
from realtime.engine.base import Listener, OverQuota, Position, Published, Quota, SessionWrite
from realtime.engine.redis import QUOTA_TAKE, RedisEngine, _text, session_args

logger = logging.getLogger(__name__)


class ClusterEngine(RedisEngine):
    """History, presence, sessions and fan-out on a Redis Cluster."""

    def __init__(self, url: str, prefix: str = "rt") -> None:
        super().__init__(url, prefix)
        self._quota_take = self.redis.register_script(QUOTA_TAKE)

    def _client(self, url: str) -> Any:
        spec = parse_cluster_url(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in spec.nodes],
            username=spec.username,
            password=spec.password,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2),
        )

    def _db(self) -> int:
        return 0  # a Cluster has one database

    def key(self, kind: str, channel: str) -> str:
        return f"{self.prefix}:{kind}:{{{channel}}}"

    def server_key_of(self, channel: str) -> str:
        return f"{self.prefix}:!:{{{channel}}}"  # never written: the `:!:` tells the scripts to ask INFO

    def fanout_key(self, channel: str) -> str:
        return self.key("f", channel)

    async def publish(
        self, channel: str, head: str, tail: str, *, size: int, ttl: int, max_bytes: int = 0, quota: Quota | None = None
    ) -> Published:
        if quota is not None and quota.rate > 0:
            wait = int(await self._quota_take([self.key("q", quota.key)], [len(head) + len(tail), quota.rate]))
            if wait > 0:
                raise OverQuota(wait / 1_000_000)
        return await super().publish(channel, head, tail, size=size, ttl=ttl, max_bytes=max_bytes)

    async def broadcast(self, channel: str, event: str) -> None:
        await self.redis.spublish(self.fanout_key(channel), event)

    def listener(self, on_event: Callable[[str, str], None], on_resubscribed: Callable[[str], None]) -> Listener:
        return ClusterListener(self, on_event, on_resubscribed)

    async def positions(self, channels: list[str]) -> dict[str, Position | None]:
        async def one(channel: str) -> Position | None:
            flat = await self._positions([self.server_key_of(channel), self.key("m", channel)], [])
            return None if flat[0] is None else Position(_text(flat[0]), int(flat[1]))

        found = await asyncio.gather(*(one(channel) for channel in channels))
        return dict(zip(channels, found, strict=True))

    async def presence_touch(self, entries: dict[str, list[str]], *, ttl: float) -> None:
        if not entries:
            return
        expiry = await self._now_ms() + int(ttl * 1000)

        async def one(channel: str, sessions: list[str]) -> None:
            await self.redis.zadd(self.key("pz", channel), dict.fromkeys(sessions, expiry), xx=True)
            for key in self._presence_keys(channel):
                await self.redis.pexpireat(key, expiry + int(ttl * 1000))

        await asyncio.gather(*(one(channel, sessions) for channel, sessions in entries.items() if sessions))

    async def session_write(self, writes: list[SessionWrite], *, ttl: float) -> list[bool]:
        ttl_ms = max(1, int(ttl * 1000))

        async def one(write: SessionWrite) -> bool:
            args = session_args(write, ttl_ms)
            return bool(await self._session_write(keys=[self.key("s", write.session)], args=args))

        return list(await asyncio.gather(*(one(write) for write in writes)))

    async def slot_touch(self, slots: dict[str, list[str]], *, ttl: float) -> None:
        ttl_ms = int(ttl * 1000)
        touches = [self._slot_touch(keys=[self.key("c", user)], args=[ttl_ms, *names]) for user, names in slots.items()]
        await asyncio.gather(*touches)


class ClusterListener(Listener):
    """This event loop's sharded subscriptions: SSUBSCRIBE per channel served, on the node that owns it.

    redis-py's cluster pub/sub keeps one connection per node. When a node's connection breaks (a master
    killed, the network) or the cluster's slots move, the reader refreshes the slot map, makes a new
    pub/sub, subscribes every channel again where it now lives, and reports each one through
    `on_resubscribed`, so that the subscriptions read what they missed from history.
    """

    RETRY = (0.05, 2.0)

    def __init__(self, engine: ClusterEngine, on_event, on_resubscribed) -> None:
        self.engine = engine
        self.on_event = on_event
        self.on_resubscribed = on_resubscribed
        self.channels: dict[bytes, str] = {}  # sharded fan-out key -> channel
        self.pubsub: Any = None
        self.ready = asyncio.Event()  # a pub/sub is there (cleared while reconnecting)
        self.nodes_changed = asyncio.Event()  # a subscription may have opened a connection to another node
        self.closed = False
        self.failing = False
        engine.listeners.add(self)
        self.task = asyncio.get_running_loop().create_task(self._run(), name="realtime-fanout-listener")

    async def _fresh(self, first: bool) -> Any:
        """A new pub/sub, after reading the slot map again (a failover or resharding moved slots)."""
        await self.engine.redis.initialize()
        if not first:
            await self.engine.redis.nodes_manager.initialize()
        return self.engine.redis.pubsub()

    async def subscribe(self, channel: str) -> None:
        key = self.engine.fanout_key(channel).encode()
        self.channels[key] = channel
        try:
            await asyncio.wait_for(self.ready.wait(), 10.0)
            await self.pubsub.ssubscribe(key)
            self.nodes_changed.set()
        except BaseException:
            self.channels.pop(key, None)
            raise

    def unsubscribe(self, channel: str) -> None:
        key = self.engine.fanout_key(channel).encode()
        if self.channels.pop(key, None) is None or self.pubsub is None or not self.ready.is_set():
            return
        task = asyncio.ensure_future(self.pubsub.sunsubscribe(key))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        self.closed = True
        self.engine.listeners.discard(self)
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()

    async def _run(self) -> None:
        delay, longest = self.RETRY
        first = True
        while not self.closed:
            try:
                self.pubsub = await self._fresh(first)
                again = list(self.channels)
                for key in again:
                    await self.pubsub.ssubscribe(key)
                self.ready.set()
                if self.failing:
                    self.failing = False
                    logger.info("realtime fan-out: the cluster's shards answer again")
                if not first:
                    for key in again:
                        channel = self.channels.get(key)
                        if channel is not None:
                            self.on_resubscribed(channel)
                delay = self.RETRY[0]
                await self._read()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not self.failing:
                    self.failing = True
                    logger.warning("realtime fan-out: lost a shard (%r); subscribing again", exc)
            finally:
                self.ready.clear()
                old, self.pubsub = self.pubsub, None
                if old is not None:
                    with contextlib.suppress(Exception):
                        await old.aclose()
            first = False
            await asyncio.sleep(delay)
            delay = min(longest, delay * 2)

    async def _read(self) -> None:
        """One reader per node the subscriptions live on (redis-py's own reader polls the nodes in turn)."""
        readers: dict[str, asyncio.Task] = {}
        try:
            while True:
                for name, pubsub in list(self.pubsub.node_pubsub_mapping.items()):
                    if name not in readers:
                        readers[name] = asyncio.ensure_future(self._read_node(pubsub))
                self.nodes_changed.clear()
                changed = asyncio.ensure_future(self.nodes_changed.wait())
                try:
                    await asyncio.wait([*readers.values(), changed], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                for task in readers.values():
                    if task.done():
                        task.result()  # a reader ends only by raising: the connection broke
        finally:
            for task in readers.values():
                task.cancel()

    async def _read_node(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
            if message is None:
                continue
            kind = message.get("type")
            if isinstance(kind, bytes):
                kind = kind.decode()
            if kind == "smessage":
                channel = self.channels.get(message["channel"])
                if channel is not None:
                    data = message["data"]
                    self.on_event(channel, data.decode() if isinstance(data, bytes) else data)
            elif kind == "sunsubscribe" and message["channel"] in self.channels:
                # The node gave the slot up (a failover, resharding): subscribe again where it is now.
                raise ConnectionError(f"the shard of {message['channel']!r} unsubscribed it")
