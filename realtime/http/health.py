"""`GET /healthz`: does the database answer, do control events reach this process; and is the socket path full.

`channel_layer` (the protocol's name for it) is a round trip through the control topic that
revocations and admin actions travel on (`realtime.pubsub.switchboard`): sent through the engine,
heard back by this event loop. The status (200 or 503) is the database's and that round trip's only. The socket path is
"saturated" while the process holds MAX_UNAUTHENTICATED sockets without credentials
(realtime.socket.admission): new sockets without handshake credentials are refused then (HTTP 403),
but every client with credentials at the handshake still gets in, the browser client too. An
anonymous flood saturates every node alike, so a 503 for it would have a load balancer pull
them all: `sockets` says it for people, and `/metrics` for alerts
(`realtime_unauthenticated_connections` against `realtime_unauthenticated_limit`).
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse

from realtime.pubsub.switchboard import switchboard
from realtime.socket.admission import gate

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_channel_layer() -> None:
    """A round trip through the control topic: sent to every process, heard back by this one."""
    await switchboard().ping()


async def _run(name: str, check) -> tuple[str, str]:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure is reported, not raised
        logger.warning("healthz: %s failed: %r", name, exc)
        return name, f"error: {type(exc).__name__}"
    return name, "ok"


def _sockets() -> str:
    if gate().saturated():
        return f"saturated: {gate().total} sockets without credentials (MAX_UNAUTHENTICATED)"
    return "ok"


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the control round trip answer, else 503 naming what failed; `sockets` informs."""
    results = dict(
        await asyncio.gather(
            _run("database", sync_to_async(_check_database, thread_sensitive=True)),
            _run("channel_layer", _check_channel_layer),
        )
    )
    healthy = all(value == "ok" for value in results.values())
    results["sockets"] = _sockets()
    return JsonResponse(results, status=200 if healthy else 503)
