"""Error codes and close codes of the wire protocol (docs/protocol.md), with the table of close reasons.

Pure: no Django, no I/O. `realtime.core.protocol` re-exports every name.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

RequestId = int | str


class ErrorCode(StrEnum):
    """`code` of an `error` frame (and of an HTTP error body)."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    PERMISSION_DENIED = "permission_denied"
    UNKNOWN_NAMESPACE = "unknown_namespace"
    ALREADY_SUBSCRIBED = "already_subscribed"
    NOT_SUBSCRIBED = "not_subscribed"
    LIMIT_EXCEEDED = "limit_exceeded"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """WebSocket close codes. 4000-4499: reconnect; 4500-4999: do not (PROTOCOL section 7)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    HEARTBEAT_TIMEOUT = 4004
    RATE_LIMITED = 4008
    TOKEN_EXPIRED = 4009
    FORCE_RECONNECT = 4011
    SLOW = 4013
    BAD_REQUEST = 4500
    UNAUTHORIZED = 4501
    FORBIDDEN = 4503
    SESSION_TAKEN_OVER = 4509
    TOO_MANY_CONNECTIONS = 4529

    @property
    def reason(self) -> str:
        """The `reason` string sent in `disconnect`."""
        return CLOSE_CODES[self][0]

    @property
    def reconnect(self) -> bool:
        """Whether a client should reconnect after this close."""
        return CLOSE_CODES[self][1]


# code -> (reason, reconnect, what the client should do): the table of docs/protocol.md section 7.
CLOSE_CODES: dict[CloseCode, tuple[str, bool, str]] = {
    CloseCode.NORMAL: ("normal", False, "stop"),
    CloseCode.GOING_AWAY: ("going_away", True, "reconnect, resume"),
    CloseCode.INTERNAL_ERROR: ("internal_error", True, "reconnect with backoff, resume"),
    CloseCode.HEARTBEAT_TIMEOUT: ("heartbeat_timeout", True, "reconnect, resume"),
    CloseCode.RATE_LIMITED: ("rate_limited", True, "reconnect after backoff"),
    CloseCode.TOKEN_EXPIRED: ("token_expired", True, "get a fresh access token, reconnect, resume"),
    CloseCode.FORCE_RECONNECT: ("force_reconnect", True, "reconnect, resume"),
    CloseCode.SLOW: ("slow", True, "reconnect, resume (history fills the gap)"),
    CloseCode.BAD_REQUEST: ("bad_request", False, "stop"),
    CloseCode.UNAUTHORIZED: ("unauthorized", False, "stop unless it can get a new token"),
    CloseCode.FORBIDDEN: ("forbidden", False, "stop"),
    CloseCode.SESSION_TAKEN_OVER: ("session_taken_over", False, "stop: another connection resumed this session"),
    CloseCode.TOO_MANY_CONNECTIONS: ("too_many_connections", False, "stop"),
}
