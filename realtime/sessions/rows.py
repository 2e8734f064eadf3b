"""The `Connection` rows: written at authentication, refresh and close only, in the background.

A socket never waits for its row on the way in: `open_row` queues the INSERT and hands
back a `SessionRow` at once, and the refresh and the close refer to that handle. One
writer task per event loop (`_SessionWriter`) takes everything queued so far and writes
it in one trip to the database thread: the opens of the batch as one `bulk_create`
(which returns the primary keys on SQLite and PostgreSQL), then the refreshes, then the
closes, one UPDATE per (code, reason). So a storm of connects or closes is a few
statements, not one per socket on Django's single database thread, and the connect
path's only database round trip is the user lookup.

Failures are logged and counted (`metrics.service_error`), never raised into a socket:
the row is a record, and the node's cleanup closes what a failure left open. A batch of
opens that fails is written again row by row, so one bad row (its user deleted meanwhile)
loses only itself; a client address that is not an IP is stored as NULL.
`flush()` waits until everything queued on this loop so far is written (tests, shutdown).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from channels.db import database_sync_to_async
from django.db import InterfaceError, OperationalError
from django.db.models import F
from django.utils import timezone

from realtime.models import Connection
from realtime.support import metrics
from realtime.support.state import current

logger = logging.getLogger(__name__)


def new_session_id() -> str:
    """An unguessable session id (it is the key to resuming a session)."""
    return "s_" + secrets.token_hex(16)


def _as_datetime(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, tz=UTC)


def ip_or_none(address: str | None) -> str | None:
    """`address` when it is an IP address (without an IPv6 zone), else None.

    The column takes IP addresses only (PostgreSQL's inet refuses anything else), and a
    trusted proxy's X-Forwarded-For, which servers put in the scope's `client`, may carry anything.
    """
    try:
        return str(ipaddress.ip_address((address or "").partition("%")[0]))
    except ValueError:
        return None


@dataclass(eq=False, slots=True)
class SessionRow:
    """A socket's session row as the socket knows it: queued at once, `pk` set when the writer inserted it."""

    fields: dict[str, Any]  # the columns of the INSERT
    pk: int | None = None
    lost: bool = False  # the INSERT failed: later writes for this row are dropped


@dataclass(eq=False, slots=True)
class _Write:
    """One queued write; `done` (when someone waits) is resolved once its batch is written."""

    kind: str  # "open" | "refresh" | "close" | "flush"
    row: SessionRow | None = None
    values: dict[str, Any] = field(default_factory=dict)
    done: asyncio.Future | None = None


# ---------------------------------------------------------------- the batch (on the database thread)


def _failed(what: str, exc: BaseException, count: int, row: SessionRow | None = None) -> None:
    metrics.service_error(exc)
    which = ""
    if row is not None:  # name the row that failed alone
        which = f" (session {row.fields.get('session_id')}, user {getattr(row.fields.get('user'), 'pk', None)})"
    logger.warning("could not write %d session row %s(s)%s: %r", count, what, which, exc)


def _insert(rows: list[SessionRow], now: datetime) -> None:
    """INSERT the rows in one statement (Django splits it where the backend needs); set their pks.

    A row that fails (its user deleted meanwhile, a value the database refuses) must not
    take the rest of the batch with it: the rows are then tried one by one, and the one
    that fails alone is logged. Not when the database itself is unreachable: that is raised.
    """
    objects = [Connection(**row.fields, last_seen=now) for row in rows]
    try:
        Connection.objects.bulk_create(objects)
    except (OperationalError, InterfaceError):  # no database to write to: one by one would fail as well
        raise
    except Exception as exc:
        if len(rows) == 1:
            rows[0].lost = True
            _failed("open", exc, 1, rows[0])
            return
        for row in rows:
            _insert([row], now)
        return
    for row, obj in zip(rows, objects, strict=True):
        row.pk, row.fields = obj.pk, {}  # the columns are in the database now: not kept per socket


def _refresh(row: SessionRow, values: dict[str, Any], now: datetime) -> None:
    Connection.objects.filter(pk=row.pk).update(
        token_expires_at=values["token_expires_at"], refresh_count=F("refresh_count") + 1, last_seen=now
    )


def _close(closes: list[_Write], now: datetime) -> None:
    """Close rows (unless a cleanup already closed them): one UPDATE per (code, reason)."""
    by_kind: dict[tuple[int | None, str], list[int]] = defaultdict(list)
    for write in closes:
        by_kind[(write.values["close_code"], write.values["close_reason"])].append(write.row.pk)
    for (code, reason), pks in by_kind.items():
        Connection.objects.filter(pk__in=pks, closed_at__isnull=True).update(
            closed_at=now, last_seen=now, close_code=code, close_reason=reason
        )


def _write_batch(batch: list[_Write]) -> None:
    """Write one batch in order: its opens, then its refreshes, then its closes (each step on its own)."""
    now = timezone.now()
    opens = [write.row for write in batch if write.kind == "open"]
    if opens:
        try:
            _insert(opens, now)
        except Exception as exc:  # the database is down: these sockets go unrecorded
            for row in opens:
                row.lost = True
            _failed("open", exc, len(opens))
    for write in batch:
        if write.kind == "refresh" and write.row.pk is not None:
            try:
                _refresh(write.row, write.values, now)
            except Exception as exc:
                _failed("refresh", exc, 1)
    closes = [write for write in batch if write.kind == "close" and write.row.pk is not None]
    if closes:
        try:
            _close(closes, now)
        except Exception as exc:  # the cleanup closes them once this process is gone
            _failed("close", exc, len(closes))


# ---------------------------------------------------------------- the writer (on the event loop)


class _SessionWriter:
    """The session-row writes queued on one event loop, written in order, in batches, by one task.

    The task is the loop's, not a consumer's: a consumer that is cancelled while it waits
    for its close still has it written. While one batch is on the database thread the next
    one gathers, so the busier the server, the larger the batches.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[_Write] = []
        self.task: asyncio.Task | None = None

    def submit(self, write: _Write) -> None:
        self.pending.append(write)
        if self.task is None or self.task.done():
            # A fresh context: not the submitting consumer's (nor asgiref's state within it).
            self.task = self.loop.create_task(self._run(), name="realtime-session-rows", context=contextvars.Context())

    async def _run(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await database_sync_to_async(_write_batch)(batch)
            except Exception as exc:  # e.g. no database connection could be opened at all
                _failed("batch", exc, len(batch))
            finally:
                for write in batch:
                    if write.done is not None and not write.done.done():
                        write.done.set_result(None)


def _writer() -> _SessionWriter:
    """The running loop's writer: a part of the process's Node."""
    return current().loop_part(_SessionWriter, lambda: _SessionWriter(asyncio.get_running_loop()))


def _waited(write: _Write) -> asyncio.Future:
    write.done = asyncio.get_running_loop().create_future()
    _writer().submit(write)
    return write.done


# ---------------------------------------------------------------- the API


def open_row(
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
) -> SessionRow:
    """Queue the row of an admitted socket (never before valid credentials, never for a refused one);
    return its handle now."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "session_id": session_id,
        "resumed": resumed,
        "user": user,
        "auth_method": auth_method,
        "channel_name": channel_name,
        "node": node,
        "remote_addr": ip_or_none(remote_addr),
        "user_agent": user_agent[:512].replace("\x00", ""),  # (PostgreSQL's text takes no NUL)
        "opened_at": now,
        "authenticated_at": now,
        "token_expires_at": _as_datetime(expires_at),
    }
    row = SessionRow(fields)
    _writer().submit(_Write("open", row))
    return row


def record_refresh(row: SessionRow | None, expires_at: int | None) -> None:
    """Queue the record of an in-band token refresh."""
    if row is not None and not row.lost:
        _writer().submit(_Write("refresh", row, {"token_expires_at": _as_datetime(expires_at)}))


def record_close(row: SessionRow, code: int | None, reason: str) -> asyncio.Future:
    """Queue the end of a socket (batched with the other closes of the moment), now.

    Await the result to wait until it is written; it is written whether or not anyone waits.
    """
    return _waited(_Write("close", row, {"close_code": code, "close_reason": reason[:64]}))


async def flush() -> None:
    """Wait until every session-row write queued on this event loop so far is written."""
    writer = current().peek_loop(_SessionWriter)
    if writer is None or (not writer.pending and (writer.task is None or writer.task.done())):
        return
    await _waited(_Write("flush"))
