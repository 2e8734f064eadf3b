"""The connection loop: attempt, read, apply the close-code policy, back off, again.

`run(client)` is the client's one long-lived task. Each attempt gets a token (calling
the provider only when needed), opens the socket, sends `auth`, then reads frames in
order until the socket ends. Any exception of one attempt (the provider raising, an
HTTP 503 in `PasswordLogin`, a refused connection) is a failed attempt, retried with
backoff; only the close-code policy, a terminal token error or `disconnect()` stop it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from . import errors, frames
from .auth import jwt_expiry
from .backoff import (
    ABNORMAL,
    HEARTBEAT_TIMEOUT,
    TOKEN_EXPIRED,
    UNAUTHORIZED,
    backoff_delay,
    close_name,
    should_reconnect,
)
from .connection import CLOSE_TIMEOUT, Connection
from .errors import RealtimeError
from .models import ClientState

if TYPE_CHECKING:
    from .client import Client

EXPIRY_MARGIN = 10.0  # a token this close to its `exp` is renewed before a reconnect
MAX_FRAME = 16 * 2**20  # replies carry up to 1 MiB of publications plus their envelope
READ_SLICE = 5.0  # re-check the (wall-clock) liveness deadline at least this often


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one connection attempt ended."""

    code: int | None
    reason: str
    stop: bool = False


async def run(client: Client) -> None:
    """Connect, and reconnect with backoff, until a stop code, a terminal token error or `disconnect()`."""
    while True:
        url = client.urls[client._next_url % len(client.urls)]
        client._next_url += 1  # round robin: every attempt moves to the next URL
        if client._state is not ClientState.CONNECTING:
            client._set_state(ClientState.CONNECTING, url=url)
        outcome = await attempt(client, url)
        if await stops(client, outcome):
            client._close(outcome.code, outcome.reason)
            return
        delay = backoff_delay(client._attempt, client.min_delay, client.max_delay, client._random)
        client._attempt += 1
        client._set_state(ClientState.DISCONNECTED, outcome.code, outcome.reason, delay=delay)
        await asyncio.sleep(delay)


async def attempt(client: Client, url: str) -> Outcome:
    """One connection: token, socket, `auth`, then read until it ends."""
    try:
        token = await token_for_attempt(client)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        client._report(exc, "token provider")
        terminal = isinstance(exc, RealtimeError) and exc.code in errors.TERMINAL_TOKEN_CODES
        if terminal:
            client._fatal = exc
        return Outcome(None, f"token: {exc}", stop=terminal)
    try:
        ws = await client._connect(
            url,
            ping_interval=None,
            open_timeout=client.request_timeout,
            close_timeout=CLOSE_TIMEOUT,
            max_size=MAX_FRAME,
        )
    except asyncio.CancelledError:
        raise
    except RealtimeError as exc:  # a redirect to another origin (redirects.py): the same answer every time
        client._report(exc, "connect")
        client._fatal = exc
        return Outcome(None, f"connect refused: {exc}", stop=True)
    except Exception as exc:
        return Outcome(ABNORMAL, f"connect failed: {exc}")
    conn = Connection(ws, next(client._generations), url, client._report, client._logger)
    client._conn = conn
    outcome = Outcome(1000, "disconnect")
    try:
        frames.send_auth(client, conn, token)
        outcome = await read(client, conn)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug in one connection must not end the loop
        client._report(exc, "reader")
        outcome = Outcome(ABNORMAL, f"client error: {exc!r}")
    finally:
        client._conn = None
        for sub in client._subs.values():
            sub.suspend()
        if outcome.code == HEARTBEAT_TIMEOUT:
            await conn.shutdown(HEARTBEAT_TIMEOUT, outcome.reason)
        else:
            await conn.shutdown()
    return outcome


async def read(client: Client, conn: Connection) -> Outcome:
    """The reader: frames strictly in order; a silence longer than the liveness bound ends the connection."""
    last = client._clock()
    while True:
        remaining = last + conn.liveness - client._clock() if conn.liveness else READ_SLICE
        if remaining <= 0:
            if not conn.welcomed:
                return Outcome(None, "welcome_timeout")
            return Outcome(HEARTBEAT_TIMEOUT, "heartbeat_timeout")
        try:
            async with asyncio.timeout(min(remaining, READ_SLICE)):
                text = await conn.ws.recv()
        except TimeoutError:
            continue
        except ConnectionClosed as exc:
            return closed(conn, exc)
        last = client._clock()
        frames.handle(client, conn, text)


def closed(conn: Connection, exc: ConnectionClosed) -> Outcome:
    """The close code and reason: from the close frame, else the `disconnect` frame, else 1006."""
    if exc.rcvd is not None:
        code, reason = exc.rcvd.code, exc.rcvd.reason
    elif conn.disconnect_frame is not None:
        code, reason = conn.disconnect_frame.get("code"), conn.disconnect_frame.get("reason", "")
    else:
        code, reason = ABNORMAL, ""
    return Outcome(code, reason or close_name(code))


async def stops(client: Client, outcome: Outcome) -> bool:
    """Apply the close-code policy (PROTOCOL §10); a 4501 asks the token provider once more."""
    if outcome.stop or client._closing:
        return True
    if outcome.code == TOKEN_EXPIRED:
        if client._provider is None:
            return True  # nothing can renew a fixed token
        client._force_token = True
    elif outcome.code == UNAUTHORIZED:
        if client._provider is None or client._retried_unauthorized:
            return True
        client._retried_unauthorized = True  # reset by the next welcome
        try:
            token = await client._fetch_token()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            client._report(exc, "token provider")
            client._force_token = True  # a failed attempt: the next one asks again
            return isinstance(exc, RealtimeError) and exc.code in errors.TERMINAL_TOKEN_CODES
        if token == client._token:
            return True  # the provider has nothing new
        client._token = token
        return False
    return not should_reconnect(outcome.code)


async def token_for_attempt(client: Client) -> str:
    """The token to connect with: the provider is asked first time, when forced, or near `exp`."""
    token = client._token
    if client._provider is not None and (token is None or client._force_token or expiring(client, token)):
        token = client._token = await client._fetch_token()
        client._force_token = False
    if not token:  # a fixed token is checked in Client(); a provided one in _fetch_token
        raise RealtimeError("unauthorized", "no token")
    return token


def expiring(client: Client, token: str) -> bool:
    """Whether the token's `exp` is past or within `EXPIRY_MARGIN` seconds."""
    exp = jwt_expiry(token)
    return exp is not None and exp - client._clock() < EXPIRY_MARGIN
