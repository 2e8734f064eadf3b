"""The asyncio driver of the session core: sockets, the read loop, timers, token provider calls.

`Driver.run()` is the client's one long-lived task. Each attempt gets a token (the core
says when the provider must be asked), opens the socket, feeds the core `connected`, then
every frame in order, and `closed` when the socket ends; `tick` re-checks the liveness
deadline on the wall clock. The core's decision ends each attempt: reconnect after a
delay, stop, or ask the provider once more (4501). Any exception of one attempt (the
provider raising, an HTTP 503 in `PasswordLogin`, a refused connection) is a failed
attempt; only the core's policy, a terminal token error or `disconnect()` stop the loop.
`apply` carries out the core's actions; the application's events go to `output`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from . import errors
from .actions import (
    Action,
    ArmTimer,
    AskToken,
    Close,
    Decision,
    Deliver,
    Emit,
    Finish,
    Reconnect,
    Refresh,
    Report,
    Send,
    Settle,
    Stop,
)
from .auth import TokenProvider
from .connection import CLOSE_TIMEOUT, Connection
from .errors import RealtimeError
from .models import ClientState
from .session import Session

MAX_FRAME = 16 * 2**20  # replies carry up to 1 MiB of publications plus their envelope
READ_SLICE = 5.0  # re-check the (wall-clock) liveness deadline at least this often

ReplyHandler = Callable[[dict[str, Any] | None], None]  # None: the connection ended first


class Driver:
    """Runs a `Session` over `websockets`: one connection at a time, and the requests that wait on it."""

    def __init__(
        self,
        core: Session,
        *,
        connect: Callable[..., Any],
        clock: Callable[[], float],
        provider: TokenProvider | None,
        report: Callable[[BaseException, str], None],
        output: Callable[[Emit | Deliver | Finish], None],
        logger: logging.Logger,
    ) -> None:
        self.core = core
        self.connection: Connection | None = None
        self._connect, self._clock, self._provider = connect, clock, provider
        self._report, self._output, self._logger = report, output, logger
        self._waiting: dict[int | str, ReplyHandler] = {}  # who awaits each request's reply
        self._waiters: set[asyncio.Future[None]] = set()  # who awaits the next state change
        self._close_with: tuple[int, str] = (1000, "")

    def apply(self, actions: list[Action]) -> Decision | None:
        """Carry out the core's actions in order; returns its decision, when one is among them."""
        decision = None
        for action in actions:
            match action:
                case Send(frame=frame):
                    if self.connection is not None:
                        self.connection.send(frame)
                case Settle(id=rid, reply=reply):
                    handler = self._waiting.pop(rid, None)
                    if handler is not None:
                        handler(reply)
                case Report(error=error, where=where):
                    self._report(error, where)
                case Close(code=code, reason=reason):
                    self._close_with = (code, reason)
                case ArmTimer() if self.connection is not None:
                    self.connection.spawn(self._timer(action), action.name)
                case Refresh(generation=generation, expires_at=expires_at) if self.connection is not None:
                    self.connection.spawn(self._refresh(generation, expires_at), "refresh")
                case Reconnect() | Stop() | AskToken():
                    decision = action
                case Emit() | Deliver() | Finish():
                    if isinstance(action, Emit) and action.event == "state" and action.channel is None:
                        for waiter in self._waiters:
                            if not waiter.done():
                                waiter.set_result(None)
                    self._output(action)
        return decision

    async def wait_change(self, timeout: float | None) -> None:
        """Wait for the next state change, up to `timeout` seconds (None: no bound)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            self._waiters.discard(waiter)

    def received(self, text: str | bytes) -> None:
        """Feed one frame of the open connection to the core and carry out what it says."""
        self.apply(self.core.frame_received(text, self._clock()))

    # ------------------------------------------------------------ the connection loop

    async def run(self) -> None:
        """Connect, and reconnect with backoff, until the core stops (or `disconnect()` cancels this)."""
        core = self.core
        while True:
            url, actions = core.next_attempt()
            self.apply(actions)
            await self._attempt(url)
            decision = self.apply(core.decide())
            if isinstance(decision, AskToken):  # 4501: the provider gets one more chance
                try:
                    token = await self.fetch_token()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    decision = self.apply(core.recheck_failed(exc))
                else:
                    decision = self.apply(core.recheck(token))
            if not isinstance(decision, Reconnect):
                return
            await asyncio.sleep(decision.delay)

    async def _attempt(self, url: str) -> None:
        """One connection: token, socket, then frames until it ends (the core records how)."""
        core = self.core
        try:
            token = core.token
            if core.token_wanted(self._clock()):
                token = await self.fetch_token()
                core.token_received(token)
            if not token:  # a fixed token is checked in Client(); a provided one in fetch_token
                raise RealtimeError("unauthorized", "no token")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.apply(core.token_failed(exc))
            return
        try:
            ws = await self._connect(
                url,
                ping_interval=None,
                open_timeout=core.request_timeout,
                close_timeout=CLOSE_TIMEOUT,
                max_size=MAX_FRAME,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.apply(core.connect_failed(exc))
            return
        actions = core.connected(url, self._clock())
        conn = self.connection = Connection(ws, core.generation, url, self._report, self._logger)
        self._close_with = (1000, "")
        try:
            self.apply(actions)
            await self._read(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one connection must not end the loop
            self.apply(core.failed(exc))
        finally:
            if core.current(conn.generation):  # cancelled: `disconnect()`
                self.apply(core.closed(1000, "disconnect"))
            self.connection = None
            await conn.shutdown(*self._close_with)

    async def _read(self, conn: Connection) -> None:
        """The reader: frames strictly in order, until the socket ends or the core finds it silent too long."""
        core = self.core
        while True:
            now = self._clock()
            self.apply(core.tick(now))
            if not core.current(conn.generation):
                return
            deadline = core.deadline
            remaining = deadline - now if deadline is not None else READ_SLICE
            try:
                async with asyncio.timeout(min(remaining, READ_SLICE)):
                    text = await conn.ws.recv()
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                rcvd = exc.rcvd
                self.apply(core.closed(rcvd.code, rcvd.reason) if rcvd is not None else core.closed(None))
                return
            self.received(text)

    async def _timer(self, timer: ArmTimer) -> None:
        await asyncio.sleep(timer.delay)
        self.apply(self.core.timer_fired(timer))

    # ------------------------------------------------------------ tokens

    async def fetch_token(self) -> str:
        """Ask the provider; never accept an empty token."""
        token = await self._provider()
        if not isinstance(token, str) or not token:
            raise RealtimeError("unauthorized", "the token provider returned no token")
        return token

    async def _refresh(self, generation: int, expires_at: float) -> None:
        """Get a fresh token and send `refresh` in connection `generation`; the core times the retries.

        A task of that connection: cancelled when it ends, and a token that arrives after a reconnect is not sent.
        """
        core = self.core
        attempt = 0
        try:
            while True:
                try:
                    token = await self.fetch_token()
                    core.token_received(token)
                    if not core.current(generation):
                        return
                    reply = await self.request_on({"type": "refresh", "token": token})
                    core.refreshed(generation, reply)
                    return
                except RealtimeError as exc:
                    if exc.code in (errors.DISCONNECTED, errors.CLOSED):
                        return
                    self._report(exc, "refresh")
                except Exception as exc:
                    self._report(exc, "refresh")
                delay = core.refresh_delay(generation, expires_at, attempt, self._clock())
                if delay is None:
                    return
                attempt += 1
                await asyncio.sleep(delay)
        finally:
            core.refresh_ended(generation)

    # ------------------------------------------------------------ requests

    def expect(self, rid: int | str, handler: ReplyHandler) -> None:
        """Call `handler(reply)` when request `rid` is settled (`None`: its connection ended first)."""
        self._waiting[rid] = handler

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a request once connected (waiting up to the request timeout in all) and return its reply."""
        core = self.core
        event_loop = asyncio.get_running_loop()
        deadline = event_loop.time() + core.request_timeout
        while not core.live or event_loop.time() >= deadline:
            if core.state is ClientState.CLOSED:
                raise RealtimeError(errors.CLOSED, "the client is closed", sent=False)
            remaining = deadline - event_loop.time()
            if remaining <= 0:
                raise RealtimeError(errors.NOT_CONNECTED, f"not connected within {core.request_timeout} s", sent=False)
            await self.wait_change(remaining)
        return await self.request_on(frame, deadline)

    async def request_on(self, frame: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
        """Send a request on the open connection; raise `RealtimeError` (`sent=True`) on an error or timeout."""
        core = self.core
        event_loop = asyncio.get_running_loop()
        deadline = deadline if deadline is not None else event_loop.time() + core.request_timeout
        future: asyncio.Future[dict[str, Any] | None] = event_loop.create_future()

        def settle(reply: dict[str, Any] | None) -> None:
            if not future.done():
                future.set_result(reply)  # None: the connection ended first

        rid, actions = core.request(frame)
        self.expect(rid, settle)
        self.apply(actions)
        try:
            await asyncio.wait({future}, timeout=max(0.0, deadline - event_loop.time()))
            if not future.done():
                await asyncio.sleep(0)  # one loop turn for a reply already received (centrifuge-js #398)
            if not future.done():
                message = f"no reply to {frame['type']} within {core.request_timeout} s"
                raise RealtimeError(errors.TIMEOUT, message, sent=True)
        finally:
            core.forget(rid)
            self._waiting.pop(rid, None)
            if not future.done():
                future.cancel()
        reply = future.result()
        if reply is None:
            raise await self._ended(frame["type"], deadline)
        if reply.get("type") == "error":
            raise RealtimeError(reply.get("code", "error"), reply.get("message", ""), sent=True)
        return reply

    async def _ended(self, kind: str, deadline: float) -> RealtimeError:
        """The error of a sent request whose connection ended: `closed` if the client closes next, else
        `disconnected` (the loop decides right after the connection's end; bounded by the deadline)."""
        event_loop = asyncio.get_running_loop()
        while self.core.state is ClientState.CONNECTED and (remaining := deadline - event_loop.time()) > 0:
            await self.wait_change(remaining)
        code = errors.CLOSED if self.core.state is ClientState.CLOSED else errors.DISCONNECTED
        return RealtimeError(code, f"the connection ended before the reply to {kind}", sent=True)
