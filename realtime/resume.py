"""Session resume (PROTOCOL section 3): a dropped session's subscriptions, kept for a while.

When an authenticated socket goes away without a "do not reconnect" close, its
subscriptions and the last position delivered on each are saved in the engine
for RESUME_WINDOW seconds. A socket of the same user that asks for that session
(`auth.resume` or `?resume=`) takes them (once) and gets every subscription back,
each with the publications it missed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .engine import get_engine
from .protocol import CloseCode

logger = logging.getLogger(__name__)


def resumable(close_code: int | None) -> bool:
    """Whether a socket that closed with this code may be resumed.

    Not after a normal close by the client (1000) or a 4500-4999 close (do not reconnect).
    """
    if close_code is None:
        return True
    return close_code != CloseCode.NORMAL and not 4500 <= close_code <= 4999


async def save(session_id: str, user_id: Any, positions: dict[str, list], ttl: float) -> None:
    """Keep a dropped session's subscriptions and positions for `ttl` seconds."""
    state = json.dumps({"user": user_id, "subscriptions": positions}, separators=(",", ":"))
    await get_engine().save_session(session_id, state, ttl=ttl)


async def take(session_id: str | None, user_id: Any) -> dict[str, list] | None:
    """The subscriptions of `session_id` if it is resumable by this user, else None (it is consumed either way)."""
    if not session_id:
        return None
    try:
        raw = await get_engine().take_session(session_id)
    except Exception as exc:  # no resume is the safe answer: the client recovers channel by channel
        logger.warning("could not read session %s for a resume: %r", session_id, exc)
        return None
    if raw is None:
        return None
    state = json.loads(raw)
    if state.get("user") != user_id:
        logger.warning("session %s asked back by another user (%s)", session_id, user_id)
        return None
    return state.get("subscriptions") or {}
