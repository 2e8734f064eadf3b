"""The `Connection` rows: written at authentication, refresh and close only.

Every function here is one short transaction run off the event loop
(`database_sync_to_async`); none is called per message.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from django.db.models import F
from django.utils import timezone

from .conf import realtime_settings
from .exceptions import Disconnect
from .models import Connection
from .protocol import CloseCode


def new_session_id() -> str:
    """An unguessable session id (it is the key to resuming a session)."""
    return "s_" + secrets.token_hex(16)


def _as_datetime(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, tz=UTC)


def _enforce_connection_limit(row: Connection) -> None:
    """Close `row` with 4529 when its user already has MAX_CONNECTIONS_PER_USER open sockets.

    Counting only the rows opened before this one (lower pk) makes simultaneous
    connects agree on who is over the limit, without a lock.
    """
    limit = realtime_settings.MAX_CONNECTIONS_PER_USER
    earlier = Connection.objects.filter(user_id=row.user_id, closed_at__isnull=True, pk__lt=row.pk).count()
    if earlier >= limit:
        code = CloseCode.TOO_MANY_CONNECTIONS
        Connection.objects.filter(pk=row.pk).update(
            closed_at=timezone.now(), close_code=int(code), close_reason=code.reason
        )
        raise Disconnect(code)


@database_sync_to_async
def record_session(
    *,
    session_id: str,
    channel_name: str,
    node: str,
    remote_addr: str | None,
    user_agent: str,
    user,
    auth_method: str,
    expires_at: int | None,
    resumed: bool = False,
) -> int:
    """Record an authenticated socket (the first database write of a socket: none before valid
    credentials) and return its row id; enforce the connection limit (`Disconnect` 4529)."""
    now = timezone.now()
    row = Connection.objects.create(
        session_id=session_id,
        resumed=resumed,
        user=user,
        auth_method=auth_method,
        channel_name=channel_name,
        node=node,
        remote_addr=remote_addr,
        user_agent=user_agent[:512],
        opened_at=now,
        authenticated_at=now,
        last_seen=now,
        token_expires_at=_as_datetime(expires_at),
    )
    _enforce_connection_limit(row)
    return row.pk


@database_sync_to_async
def record_refresh(row_id: int, expires_at: int | None) -> None:
    """Record an in-band token refresh."""
    Connection.objects.filter(pk=row_id).update(
        token_expires_at=_as_datetime(expires_at), refresh_count=F("refresh_count") + 1, last_seen=timezone.now()
    )


@database_sync_to_async
def record_close(row_id: int, code: int | None, reason: str) -> None:
    """Record the end of a socket (unless a cleanup or the limit already closed it)."""
    now = timezone.now()
    Connection.objects.filter(pk=row_id, closed_at__isnull=True).update(
        closed_at=now, last_seen=now, close_code=code, close_reason=reason[:64]
    )
