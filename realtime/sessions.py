"""The `Connection` rows: written at authentication, refresh and close only.

Every function here is one short transaction run off the event loop
(`database_sync_to_async`); none is called per message.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections import defaultdict
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
def _write_closes(closes: list[tuple[int, int | None, str]]) -> None:
    """Close rows (unless a cleanup or the limit already closed them): one UPDATE per (code, reason)."""
    now = timezone.now()
    by_kind: dict[tuple[int | None, str], list[int]] = defaultdict(list)
    for row_id, code, reason in closes:
        by_kind[(code, reason)].append(row_id)
    for (code, reason), row_ids in by_kind.items():
        Connection.objects.filter(pk__in=row_ids, closed_at__isnull=True).update(
            closed_at=now, last_seen=now, close_code=code, close_reason=reason
        )


class _CloseWriter:
    """The closes queued on one event loop, written in batches by one task.

    A thousand sockets closing at once would otherwise queue a thousand UPDATEs on the
    one database thread, and daphne kills the consumers still waiting after its
    application_close_timeout (10 s): their rows stayed open. Batched, it is a few
    statements, and the writer task is the loop's, not the consumers' (a consumer that
    is killed while it waits still has its close written).
    """

    def __init__(self) -> None:
        self.pending: list[tuple[int, int | None, str, asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    async def close(self, row_id: int, code: int | None, reason: str) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if nobody waits
        self.pending.append((row_id, code, reason[:64], done))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._flush(), name="realtime-session-closes")
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await _write_closes([(row_id, code, reason) for row_id, code, reason, _ in batch])
            except Exception as exc:
                outcome: BaseException | None = exc
            else:
                outcome = None
            for *_, done in batch:
                if not done.done():
                    done.set_result(None) if outcome is None else done.set_exception(outcome)


_writers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def record_close(row_id: int, code: int | None, reason: str) -> None:
    """Record the end of a socket (unless a cleanup or the limit already closed it), batched with
    the other closes of the moment; returns once it is written."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _CloseWriter()
    await writer.close(row_id, code, reason)
