"""The engine interface: channel history with positions, and presence.

Two backends implement it: `MemoryEngine` (one process, the embedded default)
and `RedisEngine` (many processes). One contract test suite runs against both
(tests/integration/test_engine_contract.py).

Publications are stored as their JSON text (the publication object of
docs/protocol.md section 4), built once when published; replies and pushes
splice that text in rather than serialising it again (`realtime.core.frames`).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from realtime.core.protocol import Position  # (epoch, offset): the same position the protocol speaks of


@dataclass(frozen=True, slots=True)
class Published:
    """A publication just appended: its position and its JSON text."""

    epoch: str
    offset: int
    text: str


@dataclass(frozen=True, slots=True)
class Quota:
    """A publisher's quota (PUBLISH_BYTES_PER_SECOND): `rate` bytes per second for `key` (a user id),
    one second's worth at once, shared by everything that publishes for that key."""

    key: str
    rate: int


class OverQuota(Exception):
    """The publication would take its publisher over its quota: nothing was stored or sent.

    `wait` is how many seconds until it would fit.
    """

    def __init__(self, wait: float) -> None:
        super().__init__(f"over the publish quota; fits in {wait:.3f} s")
        self.wait = wait


@dataclass(frozen=True, slots=True)
class Slice:
    """Publications read from history, oldest first, with the channel's position.

    `complete` is False when the requested position is in another epoch or has
    fallen out of history (some publications after it are gone), and when the read
    was cut short by its `limit` or `max_bytes` (some are not in this slice).
    """

    epoch: str
    offset: int
    publications: list[str] = field(default_factory=list)
    complete: bool = True


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """What a presence update changed: users whose first connection joined, or whose last left."""

    joined: list[dict[str, Any]] = field(default_factory=list)
    left: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionWrite:
    """One session record update: `changes` maps a channel to `[epoch, offset]`, or to None to remove it."""

    session: str
    owner: str
    user: str
    changes: dict[str, list | None]


# What `Engine.admit` answers.
ADMITTED, OVER_RATE, AT_LIMIT = 0, 1, 2

# How long a revocation is kept in the engine: longer than any socket's cached user (USER_CACHE_SECONDS)
# and any access token, after which the database's record alone answers.
REVOCATION_TTL = 86400


@dataclass(frozen=True, slots=True)
class TakenSession:
    """A session taken over: the socket that held it (its channel name) and its subscriptions."""

    owner: str
    subscriptions: dict[str, list]


def new_epoch() -> str:
    """A fresh epoch: opaque, short, unlikely to repeat."""
    return secrets.token_hex(4)


def count_members(users) -> list[dict[str, Any]]:
    """One entry per user, with its number of connections, ordered by username then id."""
    counts: dict[Any, int] = {}
    info: dict[Any, dict[str, Any]] = {}
    for user in users:
        counts[user["id"]] = counts.get(user["id"], 0) + 1
        info.setdefault(user["id"], user)
    ordered = sorted(info.values(), key=lambda u: (str(u.get("username", "")), str(u["id"])))
    return [{**user, "connections": counts[user["id"]]} for user in ordered]


class Listener(ABC):
    """One process's (event loop's) subscription to the fan-out events of the channels it serves.

    `on_event(channel, event)` is called with each event of a subscribed channel, in the
    order the engine sent them; `on_resubscribed(channel)` after the listener lost its
    connection and subscribed again (events may have been lost meanwhile: heal from history).
    """

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start hearing `channel`; returns once every event sent from now on will be heard."""

    @abstractmethod
    def unsubscribe(self, channel: str) -> None:
        """Stop hearing `channel` (takes effect soon; events already on the way may still come)."""

    async def close(self) -> None:
        """Stop for good."""
        return None


class Engine(ABC):
    """History with positions and presence, for every channel; and the fan-out of their events."""

    # ---------------------------------------------------------------- history

    @abstractmethod
    async def publish(
        self, channel: str, head: str, tail: str, *, size: int, ttl: int, max_bytes: int = 0, quota: Quota | None = None
    ) -> Published:
        """Give the publication the channel's next offset, append it to history and send its
        fan-out event to every listener of the channel, atomically (so events go out in offset order).

        `size` publications are kept (0: none), the newest of them whose texts total at most
        `max_bytes` UTF-8 bytes (0: no bound; the newest one stays however large), for `ttl`
        seconds after the last publication (0: forever). A channel whose history is gone gets a
        new epoch. With a `quota`, the UTF-8 bytes of `head + tail` are charged to it first, in
        the same step; `OverQuota` when they do not fit (a token bucket: a publication larger
        than a second's worth passes only from a full one, and leaves it owing).
        """

    # ---------------------------------------------------------------- fan-out

    @abstractmethod
    async def broadcast(self, channel: str, event: str) -> None:
        """Send a fan-out event (not a publication: it has no position) to the channel's listeners."""

    @abstractmethod
    def listener(self, on_event: Callable[[str, str], None], on_resubscribed: Callable[[str], None]) -> Listener:
        """A new listener for this event loop (see `Listener`)."""

    @abstractmethod
    async def position(self, channel: str, *, ttl: int) -> Position:
        """The channel's epoch and newest offset (creating the epoch if the channel has none)."""

    @abstractmethod
    async def positions(self, channels: list[str]) -> dict[str, Position | None]:
        """Each channel's stored epoch and newest offset, all in one step (the delivery check).

        None where there is no stream to vouch for (history gone, or on Redis stamped by another
        server instance); nothing is created, so the next `since` mints the new epoch.
        """

    # A read bounded by `max_bytes` (MAX_REPLY_BYTES) holds publications whose texts total at most
    # that many UTF-8 bytes, except that the first one always comes (so a reader paging forward
    # moves on past a publication larger than the bound). The bound holds while reading too: a
    # backend never loads more than the bound (and a small chunk) to cut it afterwards.

    @abstractmethod
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
        """Publications after `(epoch, offset)`, oldest first: at most `limit`, and at most `max_bytes`.

        When they do not all fit, the oldest ones that do (a page: the next read starts after its
        last offset), or with `newest` the newest ones that do (a replay that ends at the channel's
        offset, so that the live stream follows it without a gap). A replay (`newest`) from another
        epoch holds the current epoch's publications from its first (incomplete): what was published
        since the loss still reaches a client that was subscribed before it (PROTOCOL section 4).
        """

    @abstractmethod
    async def latest(self, channel: str, limit: int, *, ttl: int, max_bytes: int | None = None) -> Slice:
        """The newest `limit` publications (of those, the newest that fit in `max_bytes`), oldest first."""

    # ---------------------------------------------------------------- presence

    @abstractmethod
    async def presence_add(self, channel: str, session: str, user: dict[str, Any], *, ttl: float) -> PresenceChange:
        """Mark a connection present on a channel for `ttl` seconds (re-adding the same session joins no one)."""

    @abstractmethod
    async def presence_remove(self, channel: str, session: str) -> PresenceChange:
        """Remove a connection from a channel's presence now."""

    @abstractmethod
    async def presence_expire(self, channel: str, session: str, *, after: float) -> None:
        """Let a dropped connection's presence lapse after `after` seconds unless it is added again."""

    @abstractmethod
    async def presence_touch(self, entries: dict[str, list[str]], *, ttl: float) -> None:
        """Extend the presence of live connections: `{channel: [session, ...]}`."""

    @abstractmethod
    async def presence_prune(self, channel: str) -> PresenceChange:
        """Drop lapsed entries (dead processes, drops not resumed) and report who left."""

    @abstractmethod
    async def presence_snapshot(self, channel: str) -> tuple[PresenceChange, list[dict[str, Any]]]:
        """Prune lapsed entries and list the members, atomically: who left (to announce), and who is there.

        One step, so an entry cannot lapse between the prune and the listing and then
        be left out of the members without its `leave` ever being announced.
        """

    # ---------------------------------------------------------------- resumable sessions

    @abstractmethod
    async def session_write(self, writes: list[SessionWrite], *, ttl: float) -> list[bool]:
        """Record sessions' subscriptions and keep each record for `ttl` seconds more.

        A record is created when missing. Only the socket that owns a session writes it:
        a write whose owner is not the record's (another socket took the session over)
        changes nothing and comes back False.
        """

    @abstractmethod
    async def session_take(self, session: str, owner: str, user: str, *, ttl: float) -> TakenSession | None:
        """Take a session over for `owner`: its subscriptions and who held it; None when there is none.

        The record becomes `owner`'s, with no subscriptions (the new socket records its own)
        for `ttl` seconds. A session of another user is deleted, so that a guessed id
        cannot be tried twice, and None returned.
        """

    @abstractmethod
    async def session_delete(self, session: str, owner: str) -> None:
        """Forget a session (a deliberate close), unless another socket owns it now."""

    async def close(self) -> None:
        """Release connections (tests and shutdown)."""
        return None

    # ---------------------------------------------------------------- connection slots (MAX_CONNECTIONS_PER_USER)

    @abstractmethod
    async def slot_admit(self, user: str, slot: str, *, limit: int, ttl: float) -> bool:
        """Take a connection slot named `slot` (a socket) for `user` when the user holds fewer than `limit`.

        One atomic step: lapsed slots are dropped first, and of two admits at once only one
        can take the last slot. A slot already held is renewed (and admitted). The slot
        lasts `ttl` seconds unless renewed (`slot_touch`) or released.
        """

    @abstractmethod
    async def connect_take(self, user: str, *, rate: float, burst: int) -> bool:
        """Count one connect of `user` (CONNECT_RATE, CONNECT_BURST): False when the user is over the rate.

        A token bucket per user, shared by every process of the engine: `burst` connects at
        once, refilled at `rate` per second.
        """

    async def admit(self, user: str, slot: str, *, rate: float, burst: int, limit: int, ttl: float) -> int:
        """`connect_take`, then `slot_admit` when the connect was taken: ADMITTED, OVER_RATE or AT_LIMIT.

        One step per connect; an engine may do both in one round trip (Redis: one script).
        """
        if not await self.connect_take(user, rate=rate, burst=burst):
            return OVER_RATE
        if not await self.slot_admit(user, slot, limit=limit, ttl=ttl):
            return AT_LIMIT
        return ADMITTED

    # ---------------------------------------------------------------- revocations (the sockets' user cache)

    @abstractmethod
    async def revoked_at(self, user: str) -> int:
        """The latest revocation of `user`'s credentials recorded here, in Unix microseconds (0: none)."""

    @abstractmethod
    async def record_revocation(self, user: str, at_us: int) -> None:
        """Record a revocation of `user`'s credentials at `at_us` (keeps the latest; lasts REVOCATION_TTL)."""

    @abstractmethod
    async def slot_release(self, user: str, slot: str) -> None:
        """Give a slot back now (its socket closed)."""

    @abstractmethod
    async def slot_touch(self, slots: dict[str, list[str]], *, ttl: float) -> None:
        """Renew live sockets' slots, `{user: [slot, ...]}`, for `ttl` seconds; a slot already gone stays gone."""
