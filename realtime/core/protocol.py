"""The wire protocol of docs/protocol.md, with no I/O.

`parse()` turns a client text frame into a typed request or raises a
`realtime.core.errors.BadRequest`; one builder function per outgoing frame type
returns a dict, and `encode()` turns it into the text that goes on the wire.
Error codes and close codes (`realtime.core.codes`, re-exported here) are enums;
`CloseCode` carries the table of reasons and whether a client should reconnect.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

# The codes live in core.codes; importable from here as before.
from realtime.core.codes import CLOSE_CODES as CLOSE_CODES
from realtime.core.codes import CloseCode, ErrorCode, RequestId
from realtime.core.errors import BadRequest, TooLarge

MAX_ID_LENGTH = 64
# `\Z`, not `$`: `$` also matches before a final newline, so "public:lobby\n" would pass.
CHANNEL_RE = re.compile(r"^([a-z][a-z0-9_-]{0,31}):([A-Za-z0-9_.@=-]{1,128})\Z")
MAX_HISTORY_LIMIT = 1000
MAX_RESUME_POSITIONS = 1000  # more than any connection may subscribe (MAX_SUBSCRIPTIONS is checked on restore)


# ---------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's stream: `(epoch, offset)`."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Auth:
    """`auth`: authenticate with an access token, optionally resuming a session from the client's positions."""

    id: RequestId | None
    token: str
    resume: str | None = None
    positions: dict[str, Position] | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    """`refresh`: replace the socket's token with a fresh one of the same user."""

    id: RequestId | None
    token: str


@dataclass(frozen=True, slots=True)
class Ping:
    """`ping` from the client; answered with `pong`."""

    id: RequestId | None


@dataclass(frozen=True, slots=True)
class Pong:
    """`pong`: the client's answer to a server `ping`; no reply."""

    id: RequestId | None


@dataclass(frozen=True, slots=True)
class Subscribe:
    """`subscribe` to a channel, optionally recovering from a position."""

    id: RequestId | None
    channel: str
    recover: Position | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """`unsubscribe` from a channel."""

    id: RequestId | None
    channel: str


@dataclass(frozen=True, slots=True)
class Publish:
    """`publish` any JSON value to a channel."""

    id: RequestId | None
    channel: str
    data: Any


@dataclass(frozen=True, slots=True)
class History:
    """`history` of a channel: after `since`, or the newest `limit`."""

    id: RequestId | None
    channel: str
    since: Position | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    """`presence`: who is on a channel now."""

    id: RequestId | None
    channel: str


Request = Auth | Refresh | Ping | Pong | Subscribe | Unsubscribe | Publish | History | Presence


def _bad(message: str, request_id: RequestId | None = None):
    return BadRequest(message, request_id=request_id)


def check_size(text: str, max_bytes: int) -> None:
    """Raise `TooLarge` when the UTF-8 form of `text` is over `max_bytes`."""
    # len(text) <= bytes <= 4 * len(text): encode only when it can matter.
    if len(text) > max_bytes or (len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes):
        raise TooLarge(f"Frame over {max_bytes} bytes.")


def _request_id(frame: dict[str, Any]) -> RequestId | None:
    if "id" not in frame:
        return None
    value = frame["id"]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _bad("`id` must be an integer or a string.")
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        raise _bad(f"`id` must be at most {MAX_ID_LENGTH} characters.")
    return value


def _string(frame: dict[str, Any], field: str, rid: RequestId | None, *, required: bool = True) -> str | None:
    value = frame.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(f"`{field}` must be a non-empty string.", rid)
    return value


def _integer(value: Any, field: str, rid: RequestId | None, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(f"`{field}` must be an integer >= {minimum}.", rid)
    return value


def _channel(frame: dict[str, Any], rid: RequestId | None) -> str:
    value = frame.get("channel")
    if not isinstance(value, str) or not CHANNEL_RE.match(value):
        raise _bad("`channel` must be `namespace:name` (name: 1-128 of A-Za-z0-9_.@=-).", rid)
    return value


def _position(frame: dict[str, Any], field: str, rid: RequestId | None) -> Position | None:
    value = frame.get(field)
    return None if value is None else _position_value(value, field, rid)


def _position_value(value: Any, field: str, rid: RequestId | None) -> Position:
    if not isinstance(value, dict) or not isinstance(value.get("epoch"), str):
        raise _bad(f"`{field}` must be an object with a string `epoch` and an integer `offset`.", rid)
    return Position(value["epoch"], _integer(value.get("offset"), f"{field}.offset", rid, 0))


def parse_positions(value: Any, rid: RequestId | None = None) -> dict[str, Position] | None:
    """`positions` of a resume, `{channel: {"epoch", "offset"}}`, or raise `BadRequest` (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_RESUME_POSITIONS:
        raise _bad(f"`positions` must be an object of at most {MAX_RESUME_POSITIONS} channels.", rid)
    positions = {}
    for channel, position in value.items():
        if not isinstance(channel, str) or not CHANNEL_RE.match(channel):
            raise _bad("`positions` keys must be channel names.", rid)
        positions[channel] = _position_value(position, f"positions.{channel}", rid)
    return positions


def _parse_auth(frame, rid):
    token = _string(frame, "token", rid)
    resume = _string(frame, "resume", rid, required=False)
    positions = parse_positions(frame.get("positions"), rid)
    if positions and resume is None:
        raise _bad("`positions` goes with `resume`.", rid)
    return Auth(rid, token, resume, positions)


def _parse_refresh(frame, rid):
    return Refresh(rid, _string(frame, "token", rid))


def _parse_subscribe(frame, rid):
    return Subscribe(rid, _channel(frame, rid), _position(frame, "recover", rid))


def _parse_publish(frame, rid):
    if "data" not in frame:
        raise _bad("`data` is required.", rid)
    return Publish(rid, _channel(frame, rid), frame["data"])


def _parse_history(frame, rid):
    limit = frame.get("limit")
    if limit is not None:
        limit = _integer(limit, "limit", rid, 1)
        if limit > MAX_HISTORY_LIMIT:
            raise _bad(f"`limit` must be at most {MAX_HISTORY_LIMIT}.", rid)
    return History(rid, _channel(frame, rid), _position(frame, "since", rid), limit)


# Client frame type -> parser. An explicit table: a client's `type` never reaches getattr.
PARSERS = {
    "auth": _parse_auth,
    "refresh": _parse_refresh,
    "ping": lambda frame, rid: Ping(rid),
    "pong": lambda frame, rid: Pong(rid),
    "subscribe": _parse_subscribe,
    "unsubscribe": lambda frame, rid: Unsubscribe(rid, _channel(frame, rid)),
    "publish": _parse_publish,
    "history": _parse_history,
    "presence": lambda frame, rid: Presence(rid, _channel(frame, rid)),
}


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"Number {text[:40]} is out of range.")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON.")


# What must never reach a log line: the value of a credential field, and anything shaped like a JWT.
_SECRET_FIELD = re.compile(r'("(?:token|refresh|access|password)"\s*:\s*)"(?:[^"\\]|\\.)*"?')
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?")


def redact(text: str | None) -> str | None:
    """A client frame as it may be logged: credentials (and anything shaped like a JWT) blanked out."""
    if text is None:
        return None
    return _JWT.sub("<redacted>", _SECRET_FIELD.sub(r'\1"<redacted>"', text))


def loads_json(text: str) -> Any:
    """Parse a JSON value, refusing what cannot be written back as JSON (NaN, Infinity, `1e400`).

    Raises `ValueError`, also for nesting too deep to parse. Used for every client
    frame, the HTTP API's bodies and the publish command, so no publication can
    carry a value that a browser's `JSON.parse` would reject.
    """
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:  # a small frame of deeply nested arrays
        raise ValueError("JSON nested too deeply.") from None


def parse(text: str) -> Request:
    """Parse one client text frame into a request, or raise `BadRequest` (with the `id` when known)."""
    try:
        frame = loads_json(text)
    except ValueError as exc:
        raise _bad(f"Frame is not valid JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise _bad("Frame must be a JSON object.")
    rid = _request_id(frame)
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise _bad("`type` must be a string.", rid)
    parser = PARSERS.get(kind)
    if parser is None:
        raise _bad(f"Unknown type {kind[:64]!r}.", rid)
    return parser(frame, rid)


# ---------------------------------------------------------------- frames out


def encode(frame: dict[str, Any]) -> str:
    """The wire text of a frame: compact JSON, UTF-8 kept as is."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _reply(kind: str, request_id: RequestId | None, **fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": kind}
    if request_id is not None:
        frame["id"] = request_id
    frame.update(fields)
    return frame


def welcome(
    request_id: RequestId | None,
    *,
    session: str,
    user: dict[str, Any],
    expires_at: int | None,
    heartbeat: float,
    resume_window: float,
    resumed: bool,
) -> dict[str, Any]:
    """`welcome`: the reply to `auth`, or a push after a handshake with credentials."""
    return _reply(
        "welcome",
        request_id,
        session=session,
        user=user,
        expires_at=expires_at,
        heartbeat=_number(heartbeat),
        resume_window=_number(resume_window),
        resumed=resumed,
    )


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def error(code: ErrorCode, message: str, request_id: RequestId | None = None) -> dict[str, Any]:
    """`error`, answering the request `request_id` when there is one."""
    return _reply("error", request_id, code=str(code), message=message)


def disconnect(code: CloseCode, reason: str | None = None) -> dict[str, Any]:
    """`disconnect`: sent just before the server closes with `code`."""
    return {"type": "disconnect", "code": int(code), "reason": reason or code.reason, "reconnect": code.reconnect}


def ping() -> dict[str, Any]:
    """The server's heartbeat `ping`."""
    return {"type": "ping"}


def pong(request_id: RequestId | None) -> dict[str, Any]:
    """`pong`, the reply to a client `ping`."""
    return _reply("pong", request_id)


def expiring(expires_at: int) -> dict[str, Any]:
    """`expiring`: refresh the token in band before `expires_at`."""
    return {"type": "expiring", "expires_at": expires_at}


def refreshed(request_id: RequestId | None, expires_at: int | None) -> dict[str, Any]:
    """`refreshed`: the reply to `refresh`."""
    return _reply("refreshed", request_id, expires_at=expires_at)


def subscribed(
    request_id: RequestId | None,
    channel: str,
    epoch: str,
    offset: int,
    recovered: bool,
    publications: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """`subscribed`: the reply to `subscribe` (or a push after a resume).

    `publications=None` leaves them out, for `encode_with_publications`.
    """
    frame = _reply("subscribed", request_id, channel=channel, epoch=epoch, offset=offset, recovered=recovered)
    if publications is not None:
        frame["publications"] = publications
    return frame


def unsubscribed(request_id: RequestId | None, channel: str, reason: str | None = None) -> dict[str, Any]:
    """`unsubscribed`: the reply to `unsubscribe`, or a push with a `reason`."""
    frame = _reply("unsubscribed", request_id, channel=channel)
    if reason is not None:
        frame["reason"] = reason
    return frame


def published(request_id: RequestId | None, channel: str, epoch: str, offset: int) -> dict[str, Any]:
    """`published`: the reply to `publish`, with the publication's position."""
    return _reply("published", request_id, channel=channel, epoch=epoch, offset=offset)


def history(
    request_id: RequestId | None, channel: str, epoch: str, offset: int, publications: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """`history`: the reply to `history` (`publications=None`: for `encode_with_publications`)."""
    frame = _reply("history", request_id, channel=channel, epoch=epoch, offset=offset)
    if publications is not None:
        frame["publications"] = publications
    return frame


def encode_with_publications(frame: dict[str, Any], publications: list[str]) -> str:
    """Encode a frame and append `"publications"`: stored publication texts, spliced in, not re-serialised."""
    return encode(frame)[:-1] + ',"publications":[' + ",".join(publications) + "]}"


def presence(request_id: RequestId | None, channel: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    """`presence`: the reply to `presence`, one entry per user."""
    return _reply("presence", request_id, channel=channel, members=members)


def join(channel: str, user: dict[str, Any]) -> dict[str, Any]:
    """`join`: a user's first connection subscribed to the channel."""
    return {"type": "join", "channel": channel, "user": user}


def leave(channel: str, user: dict[str, Any]) -> dict[str, Any]:
    """`leave`: a user's last connection left the channel."""
    return {"type": "leave", "channel": channel, "user": user}
