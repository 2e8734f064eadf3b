"""What each server frame does: `welcome`, replies by id, pushes, subscribe bookkeeping, refresh.

Called by the reader (`loop.read`) for one frame at a time. Push types go through an
explicit table (`PUSHES`), never `getattr` on a string from the server. A frame that
cannot be handled is reported to the `error` callbacks and the reader goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import errors
from .backoff import backoff_delay
from .connection import Connection
from .errors import RealtimeError
from .models import ClientState, SubscriptionState, User
from .subscription import RESYNC, Subscription

if TYPE_CHECKING:
    from .client import Client

TEMPORARY = frozenset({"rate_limited", "unavailable", "internal", errors.TIMEOUT})
EXPECT_PUSH, RETRY = object(), object()  # markers for Subscription.pending


def handle(client: Client, conn: Connection, text: str | bytes) -> None:
    """Handle one frame; never raises."""
    try:
        frame = json.loads(text)
        if not isinstance(frame, dict):
            raise ValueError("frame is not a JSON object")
        kind = frame.get("type")
        if kind == "welcome":
            on_welcome(client, conn, frame)
        elif "id" in frame:
            if not conn.resolve(frame):
                client._logger.debug("dropped a reply to no pending request: %.200s", text)
        else:
            push = PUSHES.get(kind)
            if push is None:
                client._logger.debug("ignored push %r", kind)
            else:
                push(client, conn, frame)
    except Exception as exc:  # a malformed frame is reported, never stops the reader
        client._report(exc, f"frame {str(text)[:200]!r}")


def send_auth(client: Client, conn: Connection, token: str) -> None:
    """`auth` with the token, plus `resume` and `positions` when there is a session to resume."""
    frame: dict[str, Any] = {"type": "auth", "id": next(client._ids), "token": token}
    if client.session:
        frame["resume"] = client.session
        positions = {ch: sub.position.to_json() for ch, sub in client._subs.items() if sub.wanted and sub.position}
        if positions:
            frame["positions"] = positions
            conn.positions_sent = set(positions)
    conn.request(frame, lambda reply: _auth_reply(client, reply))
    conn.liveness = client.request_timeout  # the welcome must come within a request timeout


def _auth_reply(client: Client, reply: dict[str, Any] | None) -> None:
    if reply is not None and reply.get("type") == "error":  # the server closes next (4501 or 4009)
        client._report(RealtimeError(reply.get("code", "error"), reply.get("message", "")), "auth")


def on_welcome(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    """Connected: record the session, reset backoff, restore subscriptions, then announce the state."""
    conn.pending.pop(frame.get("id"), None)
    conn.welcomed = True
    resumed = bool(frame.get("resumed")) and client.session is not None
    client.session = frame.get("session")
    user = frame.get("user") or {}
    client.user = User(user.get("id"), user.get("username", ""))
    heartbeat = frame.get("heartbeat")
    conn.liveness = heartbeat + client.heartbeat_timeout if heartbeat else None
    conn.expires_at = frame.get("expires_at")
    client._attempt = 0
    client._retried_unauthorized = False
    for sub in list(client._subs.values()):
        if not sub.wanted:
            continue
        if resumed and sub.channel in conn.positions_sent:
            sub.pending, sub.recovering = EXPECT_PUSH, True  # the server pushes its `subscribed`
        else:
            send_subscribe(client, conn, sub)
    # Subscribes are queued first, so a state callback that subscribes does not send twice.
    client._set_state(ClientState.CONNECTED, resumed=resumed, url=conn.url)


def send_subscribe(client: Client, conn: Connection, sub: Subscription) -> None:
    """`subscribe`, with `recover` from the last position when there is one."""
    rid = next(client._ids)
    frame: dict[str, Any] = {"type": "subscribe", "id": rid, "channel": sub.channel}
    if sub.position is not None:
        frame["recover"] = sub.position.to_json()
    sub.pending, sub.recovering = rid, sub.position is not None
    sub.state = SubscriptionState.SUBSCRIBING
    conn.request(frame, lambda reply: _subscribe_reply(client, conn, sub, rid, reply))


def send_unsubscribe(client: Client, conn: Connection, channel: str) -> None:
    """`unsubscribe`, not waiting for its reply."""
    conn.request({"type": "unsubscribe", "id": next(client._ids), "channel": channel}, lambda reply: None)


def resync(client: Client, conn: Connection, sub: Subscription) -> None:
    """Lost state: unsubscribe, then subscribe again with `recover` from the last position."""
    send_unsubscribe(client, conn, sub.channel)
    send_subscribe(client, conn, sub)


def _subscribe_reply(
    client: Client, conn: Connection, sub: Subscription, rid: int, reply: dict[str, Any] | None
) -> None:
    if reply is None or sub.pending != rid:
        return  # the connection ended, or a newer subscribe (or a push) superseded this one
    if reply.get("type") == "subscribed":
        sub.on_subscribed(reply)
        return
    code, message = reply.get("code", "error"), reply.get("message", "")
    if code == "already_subscribed":  # restored by a resume but its push not seen: start over
        resync(client, conn, sub)
    elif code in TEMPORARY:
        sub._error(RealtimeError(code, message))
        sub.pending = RETRY
        conn.spawn(_retry_subscribe(client, conn, sub), "subscribe-retry")
    else:
        sub.end(code, RealtimeError(code, message))


async def _retry_subscribe(client: Client, conn: Connection, sub: Subscription) -> None:
    await asyncio.sleep(backoff_delay(1, client.min_delay, client.max_delay, client._random))
    if client._conn is conn and sub.wanted and sub.pending is RETRY:
        send_subscribe(client, conn, sub)


# ------------------------------------------------------------------ pushes


def _subscribed(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    sub = client._subs.get(frame["channel"])
    if sub is None or not sub.wanted:
        send_unsubscribe(client, conn, frame["channel"])  # restored by a resume, but no longer wanted
    else:
        sub.on_subscribed(frame)


def _message(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    sub = client._subs.get(frame.get("channel"))
    if sub is not None and sub.wanted and sub.on_message(frame) == RESYNC:
        resync(client, conn, sub)


def _unsubscribed(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    sub = client._subs.get(frame.get("channel"))
    if sub is None or not sub.wanted:
        return
    reason = frame.get("reason") or "unsubscribed"
    if reason == "insufficient_state":
        send_subscribe(client, conn, sub)  # the server could not fill a gap: recover from our position
    else:
        sub.end(reason, RealtimeError(reason, f"{sub.channel}: the server ended the subscription"))


def _presence(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    sub = client._subs.get(frame.get("channel"))
    if sub is not None and sub.wanted:
        sub.on_presence(frame["type"], frame)


def _ping(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    conn.send({"type": "pong"})


def _disconnect(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    conn.disconnect_frame = frame  # the close frame follows; this is the fallback for its code


def _error(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    client._report(RealtimeError(frame.get("code", "error"), frame.get("message", "")), "server")


def _expiring(client: Client, conn: Connection, frame: dict[str, Any]) -> None:
    if client._provider is None:
        client._logger.warning("the token expires at %s; a fixed token cannot be refreshed", frame.get("expires_at"))
    elif not conn.refreshing:
        conn.refreshing = True
        conn.spawn(refresh(client, conn, float(frame.get("expires_at") or 0)), "refresh")


PUSHES: dict[str, Callable[[Client, Connection, dict[str, Any]], None]] = {
    "ping": _ping,
    "message": _message,
    "subscribed": _subscribed,
    "unsubscribed": _unsubscribed,
    "join": _presence,
    "leave": _presence,
    "expiring": _expiring,
    "disconnect": _disconnect,
    "error": _error,
}


async def refresh(client: Client, conn: Connection, expires_at: float) -> None:
    """Get a fresh token and send `refresh` on `conn`; retry with jitter until `expires_at`.

    Tied to `conn`: cancelled when it ends, and a token that arrives after a reconnect is not sent.
    """
    attempt = 0
    try:
        while True:
            try:
                token = client._token = await client._fetch_token()
                if client._conn is not conn:
                    return
                reply = await client._request_on(conn, {"type": "refresh", "token": token})
                conn.expires_at = reply.get("expires_at")
                return
            except RealtimeError as exc:
                if exc.code in (errors.DISCONNECTED, errors.CLOSED):
                    return
                client._report(exc, "refresh")
            except Exception as exc:
                client._report(exc, "refresh")
            remaining = expires_at - client._clock()
            if remaining <= 0 or client._conn is not conn:
                return  # the server closes with 4009; the reconnect asks for a fresh token
            delay = backoff_delay(attempt, client.min_delay, client.max_delay, client._random)
            attempt += 1
            await asyncio.sleep(min(delay, remaining))
    finally:
        conn.refreshing = False
