"""Failures of a backing service (Redis, the database, the network) and the one place they become `unavailable`.

`backing_service` is shared by the socket handlers, the HTTP API and the commands; it
counts the failure (`realtime.support.metrics`), logs it and raises `Unavailable`. It sits above
the metrics, so the error tree (`realtime.core.errors`) stays pure.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import redis
from django.db import DatabaseError

from realtime.core.codes import RequestId
from realtime.core.errors import Unavailable
from realtime.support import metrics

# The logger's name from before the move out of realtime.exceptions: log filters and alerts keep matching.
logger = logging.getLogger("realtime.exceptions")

# Failures of a backing service: the client gets `unavailable` and may retry.
SERVICE_ERRORS = (OSError, redis.RedisError, DatabaseError)


@asynccontextmanager
async def backing_service(request_id: RequestId | None = None):
    """Turn a failure of Redis or the database into `unavailable` (the details go to the log)."""
    try:
        yield
    except SERVICE_ERRORS as exc:
        metrics.service_error(exc)
        logger.warning("backing service failed: %r", exc)
        raise Unavailable(request_id=request_id) from exc
