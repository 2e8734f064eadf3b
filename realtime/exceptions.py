"""Errors of the real-time engine (the names as they were: the tree lives in `realtime.core.errors`,
`SERVICE_ERRORS` and `backing_service` in `realtime.services`).

Each one becomes exactly one frame through the consumer's single error path
(`realtime.consumers.RealtimeConsumer.handle_error`)::

    RealtimeError                 -> {"type": "error", "code": ...}, socket stays open
    ├── BadRequest                   bad_request
    │   └── TooLarge                 too_large
    ├── Unauthorized                 unauthorized
    ├── Forbidden                    forbidden
    ├── PermissionDenied             permission_denied
    ├── UnknownNamespace             unknown_namespace
    ├── AlreadySubscribed            already_subscribed
    ├── NotSubscribed                not_subscribed
    ├── LimitExceeded                limit_exceeded
    ├── RateLimited                  rate_limited
    └── Unavailable                  unavailable
    Disconnect                    -> {"type": "disconnect", ...} then close with its code

Anything else is a server fault: logged with a reference, `internal` (or close 1011).
A failure of a backing service (Redis, the database) becomes `Unavailable` in one
place, `backing_service`, shared by the socket handlers, the HTTP API and the commands.
"""

from __future__ import annotations

from .core.errors import (
    AlreadySubscribed,
    BadRequest,
    Disconnect,
    Forbidden,
    LimitExceeded,
    NotSubscribed,
    PermissionDenied,
    RateLimited,
    RealtimeError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownNamespace,
    with_id,
)
from .services import SERVICE_ERRORS, backing_service

__all__ = [
    "SERVICE_ERRORS",
    "AlreadySubscribed",
    "BadRequest",
    "Disconnect",
    "Forbidden",
    "LimitExceeded",
    "NotSubscribed",
    "PermissionDenied",
    "RateLimited",
    "RealtimeError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnknownNamespace",
    "backing_service",
    "with_id",
]
