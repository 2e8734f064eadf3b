"""The values the client hands to the application: frozen dataclasses and state enums."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ClientState(StrEnum):
    """`disconnected` -> `connecting` -> `connected`; `closed` is terminal (until `connect()` again)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class SubscriptionState(StrEnum):
    """`unsubscribed` -> `subscribing` -> `subscribed`."""

    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's stream: `(epoch, offset)`."""

    epoch: str
    offset: int

    def to_json(self) -> dict[str, Any]:
        """The wire form, `{"epoch", "offset"}`."""
        return {"epoch": self.epoch, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication. `recovered` is True when it came from a replay (not part of equality)."""

    channel: str
    epoch: str
    offset: int
    data: Any
    user: int | str | None
    ts: int
    recovered: bool = field(default=False, compare=False)

    @property
    def position(self) -> Position:
        """This publication's `(epoch, offset)`."""
        return Position(self.epoch, self.offset)

    def to_json(self) -> dict[str, Any]:
        """The wire form, `{"channel", "epoch", "offset", "data", "user", "ts"}`."""
        return {
            "channel": self.channel,
            "epoch": self.epoch,
            "offset": self.offset,
            "data": self.data,
            "user": self.user,
            "ts": self.ts,
        }

    @classmethod
    def from_frame(cls, frame: dict[str, Any], channel: str | None = None, recovered: bool = False) -> Publication:
        """Build from a `message` frame or a replayed publication (raises KeyError/TypeError when malformed)."""
        return cls(
            channel=frame.get("channel") or channel or "",
            epoch=str(frame["epoch"]),
            offset=int(frame["offset"]),
            data=frame.get("data"),
            user=frame.get("user"),
            ts=int(frame.get("ts") or 0),
            recovered=recovered,
        )


@dataclass(frozen=True, slots=True)
class Published:
    """The reply to `publish`: where the publication landed."""

    channel: str
    epoch: str
    offset: int

    @property
    def position(self) -> Position:
        """The publication's `(epoch, offset)`."""
        return Position(self.epoch, self.offset)

    def to_json(self) -> dict[str, Any]:
        """`{"channel", "epoch", "offset"}`."""
        return {"channel": self.channel, "epoch": self.epoch, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class History:
    """The reply to `history`: the channel's newest position and the publications asked for."""

    channel: str
    epoch: str
    offset: int
    publications: list[Publication]


@dataclass(frozen=True, slots=True)
class User:
    """A user as the server names it: `{id, username}` (`id` a number, or a string for a non-integer key)."""

    id: int | str
    username: str


@dataclass(frozen=True, slots=True)
class Member:
    """One user present on a channel, with how many connections it has there."""

    id: int | str
    username: str
    connections: int


@dataclass(frozen=True, slots=True)
class StateChange:
    """One client state transition, with the close `code`/`reason` that caused it.

    `delay` is the seconds until the next attempt when a retry is scheduled;
    `resumed` tells, on `connected`, whether the server resumed the session.
    """

    state: ClientState
    previous: ClientState
    code: int | None = None
    reason: str = ""
    delay: float | None = None
    resumed: bool | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class SubscribedEvent:
    """A subscription became active: its position, whether it recovered from one, and if completely."""

    channel: str
    epoch: str
    offset: int
    recovering: bool
    recovered: bool
    publications: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class UnsubscribedEvent:
    """A subscription ended: `reason` is the server's (`removed`), `unsubscribe`, or an error code."""

    channel: str
    reason: str


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A `join` or `leave` on a channel."""

    channel: str
    user: User
