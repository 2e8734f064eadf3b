"""Errors of the real-time engine, by the names the rest of the code imports.

The tree and what frame each becomes: `realtime.core.errors`; the one place where a failing
backing service (Redis, the database) becomes `Unavailable`: `realtime.services`.
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
