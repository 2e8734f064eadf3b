"""Waiting for session rows that a server process writes (in the background, so a moment after `welcome`)."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.models import Connection

POLL = 0.05  # seconds between database polls
POLL_LIMIT = 30.0  # a bound on waiting, far above what the timers promise; never a measurement


async def poll_rows(predicate, session_ids: list[str], limit: float = POLL_LIMIT) -> list[Connection]:
    """Poll the database until these sessions' rows all exist and `predicate(rows)` holds; fail after `limit` s."""
    rows = Connection.objects.filter(session_id__in=session_ids)
    return await poll_queryset(lambda found: len(found) == len(session_ids) and predicate(found), rows, limit)


async def poll_queryset(predicate, queryset, limit: float = POLL_LIMIT) -> list[Connection]:
    """Poll the database until `predicate(rows)` holds for the rows of `queryset`; fail after `limit` s."""
    deadline = time.monotonic() + limit
    while True:
        rows = [row async for row in queryset.order_by("pk")]
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"rows never reached the expected state within {limit} s: {[vars(r) for r in rows]}")
        await asyncio.sleep(POLL)
