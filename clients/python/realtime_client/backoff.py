"""Reconnect backoff (full jitter) and the close-code policy of PROTOCOL §7 and §10."""

from __future__ import annotations

from collections.abc import Callable

# Names for close codes that arrive without a reason (or never arrive: 1006).
CLOSE_NAMES: dict[int, str] = {
    1000: "normal",
    1001: "going_away",
    1002: "protocol_error",
    1005: "no_status",
    1006: "abnormal",
    1008: "policy_violation",
    1011: "internal_error",
    4004: "heartbeat_timeout",
    4008: "rate_limited",
    4009: "token_expired",
    4011: "force_reconnect",
    4013: "slow",
    4500: "bad_request",
    4501: "unauthorized",
    4503: "forbidden",
    4509: "session_taken_over",
    4529: "too_many_connections",
}

TOKEN_EXPIRED = 4009
UNAUTHORIZED = 4501
ABNORMAL = 1006
HEARTBEAT_TIMEOUT = 4004


def backoff_delay(attempt: int, min_delay: float, max_delay: float, random: Callable[[], float]) -> float:
    """Full jitter: a uniform delay in `[0, min(max_delay, min_delay * 2**attempt))` seconds.

    `attempt` counts failed attempts since the last `welcome` (0 for the first retry).
    """
    ceiling = min(max_delay, min_delay * 2 ** min(max(attempt, 0), 62))
    return random() * ceiling


def should_reconnect(code: int | None) -> bool:
    """Whether a close with `code` is followed by a reconnect: all but 1000 and 4500-4999."""
    if code is None:
        return True
    return not (code == 1000 or 4500 <= code <= 4999)


def close_name(code: int | None) -> str:
    """A short name for a close code (`1006` -> `abnormal`), or `""` when unknown."""
    return CLOSE_NAMES.get(code, "") if code is not None else ""
