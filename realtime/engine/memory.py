"""The in-memory engine: the embedded default for one process (runserver, a single daphne).

Everything lives in this process's dicts; nothing awaits inside an update, so
each operation is atomic on the event loop.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from realtime.core.frames import publication_event, splice_position, ts_of
from realtime.core.limits import KeyedBuckets, utf8_size
from realtime.engine.base import (
    REVOCATION_TTL,
    Engine,
    Listener,
    OverQuota,
    Position,
    PresenceChange,
    Published,
    Quota,
    SessionWrite,
    Slice,
    TakenSession,
    count_members,
    new_epoch,
)


@dataclass
class _Stream:
    epoch: str
    offset: int = 0
    history: deque = field(default_factory=deque)  # (offset, text, its UTF-8 size), oldest first
    bytes: int = 0  # the UTF-8 sizes in `history`, added up
    expires_at: float | None = None


def _fit(entries: Iterable[tuple[int, str, int]], limit: int | None, max_bytes: int | None) -> tuple[list[str], bool]:
    """The texts of `entries`, in their order, up to `limit` and `max_bytes` (the first always); True when cut."""
    texts: list[str] = []
    total = 0
    for _, text, size in entries:
        if (limit is not None and len(texts) >= limit) or (max_bytes and texts and total + size > max_bytes):
            return texts, True
        texts.append(text)
        total += size
    return texts, False


@dataclass
class _Presence:
    sessions: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    counts: dict[Any, int] = field(default_factory=dict)


@dataclass
class _Session:
    owner: str
    user: str
    subscriptions: dict[str, list]
    expires_at: float


class MemoryListener(Listener):
    """A listener on the memory engine: events are handed over directly, on the listener's loop."""

    def __init__(self, engine: MemoryEngine, on_event: Callable[[str, str], None]) -> None:
        self.engine = engine
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.channels: set[str] = set()
        engine.listeners.add(self)

    def hear(self, channel: str, event: str) -> None:
        if channel not in self.channels:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.on_event(channel, event)
        elif not self.loop.is_closed():  # published from another thread (publish_sync in a worker)
            self.loop.call_soon_threadsafe(self.on_event, channel, event)

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)

    async def close(self) -> None:
        self.channels.clear()
        self.engine.listeners.discard(self)


class MemoryEngine(Engine):
    """History and presence in this process's memory."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.streams: dict[str, _Stream] = {}
        self.presence: dict[str, _Presence] = {}
        self.sessions: dict[str, _Session] = {}
        self.slots: dict[str, dict[str, float]] = {}  # user -> slot -> expiry (connection limit)
        self.connects = KeyedBuckets(clock=clock)  # user -> bucket of connects (CONNECT_RATE)
        self.revocations: dict[str, tuple[int, float]] = {}  # user -> (latest revocation in µs, expiry)
        self.quotas = KeyedBuckets(clock=clock)  # publish quotas: this process's own (one process, one engine)
        self.listeners: weakref.WeakSet[MemoryListener] = weakref.WeakSet()

    def _stored(self, channel: str) -> _Stream | None:
        """The channel's stream, None when it has none (never there, or expired)."""
        stream = self.streams.get(channel)
        if stream is not None and stream.expires_at is not None and self.clock() >= stream.expires_at:
            return None
        return stream

    def _stream(self, channel: str, ttl: int) -> _Stream:
        stream = self._stored(channel)
        if stream is None:
            # history gone (never there, or expired): a new epoch
            stream = self.streams[channel] = _Stream(new_epoch())
            stream.expires_at = self.clock() + ttl if ttl else None
        return stream

    def forget(self, channel: str | None = None) -> None:
        """Lose stored history (all of it, or one channel's), as a Redis flush would."""
        if channel is None:
            self.streams.clear()
        else:
            self.streams.pop(channel, None)

    async def publish(
        self, channel: str, head: str, tail: str, *, size: int, ttl: int, max_bytes: int = 0, quota: Quota | None = None
    ) -> Published:
        cost = utf8_size(head) + utf8_size(tail)
        if quota is not None and not self.quotas.take(quota.key, cost, rate=quota.rate):
            raise OverQuota(self.quotas.wait(quota.key, cost))
        stream = self._stream(channel, ttl)
        stream.offset += 1
        text = splice_position(head, stream.epoch, stream.offset, tail)
        if size:
            history = stream.history
            text_size = cost + len(text) - len(head) - len(tail)  # the position is ASCII: sized once, not at reads
            history.append((stream.offset, text, text_size))
            stream.bytes += text_size
            while len(history) > 1 and (len(history) > size or (max_bytes and stream.bytes > max_bytes)):
                stream.bytes -= history.popleft()[2]
        stream.expires_at = self.clock() + ttl if ttl else None
        self._emit(channel, publication_event(stream.epoch, stream.offset, ts_of(head, tail), text))
        return Published(stream.epoch, stream.offset, text)

    # ---------------------------------------------------------------- fan-out

    def _emit(self, channel: str, event: str) -> None:
        for listener in list(self.listeners):
            listener.hear(channel, event)

    async def broadcast(self, channel: str, event: str) -> None:
        self._emit(channel, event)

    def listener(self, on_event: Callable[[str, str], None], on_resubscribed: Callable[[str], None]) -> Listener:
        return MemoryListener(self, on_event)

    async def position(self, channel: str, *, ttl: int) -> Position:
        stream = self._stream(channel, ttl)
        return Position(stream.epoch, stream.offset)

    async def positions(self, channels: list[str]) -> dict[str, Position | None]:
        streams = {channel: self._stored(channel) for channel in channels}
        return {name: None if s is None else Position(s.epoch, s.offset) for name, s in streams.items()}

    async def since(
        self,
        channel: str,
        epoch: str,
        offset: int,
        *,
        ttl: int,
        limit: int | None = None,
        max_bytes: int | None = None,
        newest: bool = False,
    ) -> Slice:
        stream = self._stream(channel, ttl)
        lost = epoch != stream.epoch
        if lost and newest:  # a replay across the loss: the current epoch from its first, never complete
            offset = 0
        elif lost or offset > stream.offset:
            return Slice(stream.epoch, stream.offset, [], complete=False)
        history = stream.history
        # Offsets are contiguous: the entries after `offset` are the last `kept` ones.
        kept = min(len(history), stream.offset - offset)
        if newest:
            texts, cut = _fit(islice(reversed(history), kept), limit, max_bytes)
            texts.reverse()
        else:
            texts, cut = _fit(islice(history, len(history) - kept, None), limit, max_bytes)
        return Slice(stream.epoch, stream.offset, texts, not (lost or cut) and kept == stream.offset - offset)

    async def latest(self, channel: str, limit: int, *, ttl: int, max_bytes: int | None = None) -> Slice:
        stream = self._stream(channel, ttl)
        texts, _ = _fit(islice(reversed(stream.history), limit), None, max_bytes)
        texts.reverse()
        return Slice(stream.epoch, stream.offset, texts)

    # ---------------------------------------------------------------- presence

    def _prune(self, channel: str) -> tuple[_Presence, list[dict[str, Any]]]:
        presence = self.presence.setdefault(channel, _Presence())
        now = self.clock()
        left = []
        for session, (user, expires_at) in list(presence.sessions.items()):
            if expires_at <= now:
                del presence.sessions[session]
                if self._decrement(presence, user):
                    left.append(user)
        return presence, left

    @staticmethod
    def _decrement(presence: _Presence, user: dict[str, Any]) -> bool:
        count = presence.counts.get(user["id"], 0) - 1
        if count <= 0:
            presence.counts.pop(user["id"], None)
            return True
        presence.counts[user["id"]] = count
        return False

    async def presence_add(self, channel: str, session: str, user: dict[str, Any], *, ttl: float) -> PresenceChange:
        presence, left = self._prune(channel)
        joined = []
        if session not in presence.sessions:
            count = presence.counts.get(user["id"], 0) + 1
            presence.counts[user["id"]] = count
            if count == 1:
                joined.append(user)
        presence.sessions[session] = (user, self.clock() + ttl)
        return PresenceChange(joined, left)

    async def presence_remove(self, channel: str, session: str) -> PresenceChange:
        presence, left = self._prune(channel)
        entry = presence.sessions.pop(session, None)
        if entry is not None and self._decrement(presence, entry[0]):
            left.append(entry[0])
        return PresenceChange([], left)

    async def presence_expire(self, channel: str, session: str, *, after: float) -> None:
        presence = self.presence.get(channel)
        if presence is not None and session in presence.sessions:
            user, _ = presence.sessions[session]
            presence.sessions[session] = (user, self.clock() + after)

    async def presence_touch(self, entries: dict[str, list[str]], *, ttl: float) -> None:
        expires_at = self.clock() + ttl
        for channel, sessions in entries.items():
            presence = self.presence.get(channel)
            if presence is None:
                continue
            for session in sessions:
                if session in presence.sessions:
                    presence.sessions[session] = (presence.sessions[session][0], expires_at)

    async def presence_prune(self, channel: str) -> PresenceChange:
        _, left = self._prune(channel)
        return PresenceChange([], left)

    def _members(self, channel: str) -> list[dict[str, Any]]:
        presence = self.presence.get(channel)
        if presence is None:
            return []
        now = self.clock()
        return count_members(user for user, expires_at in presence.sessions.values() if expires_at > now)

    async def presence_snapshot(self, channel: str) -> tuple[PresenceChange, list[dict[str, Any]]]:
        _, left = self._prune(channel)
        return PresenceChange([], left), self._members(channel)

    # ---------------------------------------------------------------- resumable sessions

    def _live_session(self, session: str) -> _Session | None:
        record = self.sessions.get(session)
        if record is not None and record.expires_at <= self.clock():
            del self.sessions[session]
            return None
        return record

    async def session_write(self, writes: list[SessionWrite], *, ttl: float) -> list[bool]:
        now = self.clock()
        for key, record in list(self.sessions.items()):  # keep the dict bounded
            if record.expires_at <= now:
                del self.sessions[key]
        results = []
        for write in writes:
            record = self.sessions.get(write.session)
            if record is None:
                record = self.sessions[write.session] = _Session(write.owner, write.user, {}, 0.0)
            elif record.owner != write.owner:
                results.append(False)
                continue
            for channel, position in write.changes.items():
                if position is None:
                    record.subscriptions.pop(channel, None)
                else:
                    record.subscriptions[channel] = list(position)
            record.expires_at = now + ttl
            results.append(True)
        return results

    async def session_take(self, session: str, owner: str, user: str, *, ttl: float) -> TakenSession | None:
        record = self._live_session(session)
        if record is None:
            return None
        if record.user != user:
            del self.sessions[session]
            return None
        self.sessions[session] = _Session(owner, user, {}, self.clock() + ttl)
        return TakenSession(record.owner, record.subscriptions)

    async def session_delete(self, session: str, owner: str) -> None:
        record = self.sessions.get(session)
        if record is not None and record.owner == owner:
            del self.sessions[session]

    # ---------------------------------------------------------------- connection slots (MAX_CONNECTIONS_PER_USER)

    async def slot_admit(self, user: str, slot: str, *, limit: int, ttl: float) -> bool:
        now = self.clock()
        held = self.slots.setdefault(user, {})
        for name, expires_at in list(held.items()):
            if expires_at <= now:
                del held[name]
        if slot not in held and len(held) >= limit:
            return False
        held[slot] = now + ttl
        return True

    async def connect_take(self, user: str, *, rate: float, burst: int) -> bool:
        return self.connects.take(user, 1, rate=rate, burst=burst)

    async def revoked_at(self, user: str) -> int:
        at, expires = self.revocations.get(user, (0, 0.0))
        return at if expires > self.clock() else 0

    async def record_revocation(self, user: str, at_us: int) -> None:
        latest = max(at_us, await self.revoked_at(user))
        self.revocations[user] = (latest, self.clock() + REVOCATION_TTL)

    async def slot_release(self, user: str, slot: str) -> None:
        held = self.slots.get(user)
        if held is not None:
            held.pop(slot, None)
            if not held:  # keep the dict bounded by the users connected now
                del self.slots[user]

    async def slot_touch(self, slots: dict[str, list[str]], *, ttl: float) -> None:
        expires_at = self.clock() + ttl
        for user, names in slots.items():
            held = self.slots.get(user, {})
            for name in names:
                if name in held:
                    held[name] = expires_at
