"""The wire protocol (docs/protocol.md): codes now, frames with the sockets issue."""

from __future__ import annotations

from enum import StrEnum


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
