"""Periodic best-effort steps: run one, log its failure once per streak of failures.

Used by the node's beat (`realtime.runtime.node`) and the hub's delivery check (`realtime.pubsub.hub`);
it sits below both so that neither has to import the other.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime.support.services import SERVICE_ERRORS

# The node's logger, as before the move: the lines keep their logger name and wording.
logger = logging.getLogger("realtime.runtime.node")


async def advisory(what: str, step: Any, failing: set[str]) -> None:
    """Run one engine step of the beat (presence, session records); log a failure once per streak."""
    try:
        await step()
    except SERVICE_ERRORS as exc:  # Redis away: expected, one line per streak, no traceback
        if what not in failing:
            failing.add(what)
            logger.warning("realtime node: %s failed (%r); retrying next period", what, exc)
    except Exception:
        if what not in failing:
            failing.add(what)
            logger.exception("realtime node: %s failed; retrying next period", what)
    else:
        failing.discard(what)
