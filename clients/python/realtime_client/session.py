"""The client's protocol core, without I/O: events in, actions out (as `websockets.protocol`).

`Session` remembers what the protocol needs across connections: the client state machine,
the requests in flight by id, the channels with their positions, the session to resume,
the token and when to renew it, the backoff counter. The driver (loop.py) feeds it what
happened (`connected`, `frame_received`, `closed`, `tick`, a timer, a token) and carries
out the actions it returns (actions.py): frames to send, events to emit, timers to arm,
and whether to reconnect or stop. It never reads a clock, sleeps, or touches a socket.
"""

from __future__ import annotations

import itertools
import json
import logging
import random as _random
from collections.abc import Callable
from typing import Any

from . import errors
from .actions import Action, ArmTimer, AskToken, Close, Emit, Reconnect, Refresh, Report, Send, Settle, Stop
from .auth import jwt_expiry
from .backoff import ABNORMAL, HEARTBEAT_TIMEOUT, TOKEN_EXPIRED, UNAUTHORIZED, backoff_delay, should_reconnect
from .channels import CHANNEL_PUSHES, SUBSCRIBE, Channels
from .errors import RealtimeError
from .link import AUTH, REQUEST, Link, Outcome, Pending
from .models import ClientState, StateChange, User

EXPIRY_MARGIN = 10.0  # a token this close to its `exp` is renewed before a reconnect


AUTH_RETRIED = frozenset({"unavailable", "internal"})  # an `auth` refused for now, not for good

class Session:
    """The protocol state of one client; each method is one event and returns the actions it causes."""

    def __init__(
        self,
        urls: list[str],
        *,
        token: str | None,
        renewable: bool,
        min_delay: float = 0.5,
        max_delay: float = 20.0,
        request_timeout: float = 10.0,
        heartbeat_timeout: float = 10.0,
        random: Callable[[], float] = _random.random,
        logger: logging.Logger | None = None,
    ) -> None:
        self.urls = urls
        self.token = token
        self.renewable = renewable  # a token provider can give a new token
        self.min_delay, self.max_delay = min_delay, max_delay
        self.request_timeout, self.heartbeat_timeout = request_timeout, heartbeat_timeout
        self.random = random
        self.logger = logger or logging.getLogger("realtime_client")
        self._ids = itertools.count(1)  # request ids, never reused across connections
        self._out: list[Action] = []
        self.state = ClientState.DISCONNECTED
        self.last_change: StateChange | None = None
        self.session_id: str | None = None
        self.user: User | None = None
        self.channels = Channels(self._out, self._request, self._retry_delay, self.logger)
        self.attempt = 0  # failed attempts since the last welcome
        self.next_url = 0
        self.outcome = Outcome(None, "")
        self.closing = False  # `disconnect()` was called: stop whatever happens next
        self.fatal: RealtimeError | None = None  # the error that stopped the client before it connected
        self.force_token = False
        self.retried_unauthorized = False
        self.generation = 0
        self.link: Link | None = None

    @property
    def open(self) -> bool:
        """Whether a socket is open (welcomed or not)."""
        return self.link is not None

    @property
    def live(self) -> bool:
        """Whether requests can be sent: a socket is open and the server has welcomed it."""
        return self.link is not None and self.link.welcomed

    @property
    def deadline(self) -> float | None:
        """When the open connection counts as dead without a further frame (the driver's clock)."""
        return self.link.deadline if self.link is not None else None

    def current(self, generation: int) -> bool:
        """Whether connection `generation` is the open one."""
        return self.link is not None and self.link.generation == generation

    # ------------------------------------------------------------ the application

    def start(self) -> list[Action]:
        """`connect()`: restore every wanted channel and enter `connecting`."""
        self.closing, self.fatal = False, None
        for channel in self.channels:
            if channel.wanted:
                channel.start()
        self._set_state(ClientState.CONNECTING, url=self.urls[self.next_url % len(self.urls)])
        return self._take()

    def subscribe(self, name: str) -> list[Action]:
        """Want the channel: `subscribe` now when connected, else at `welcome`."""
        channel = self.channels.channel(name)
        if not channel.wanted:
            channel.start()
            if self.live:
                self.channels.send_subscribe(channel)
        return self._take()

    def unsubscribe(self, name: str) -> tuple[int | None, list[Action]]:
        """End the channel now and send `unsubscribe` when connected; returns its id (None: nothing sent)."""
        channel = self.channels.channel(name)
        was_wanted = channel.wanted
        channel.end("unsubscribe")
        rid = None
        if was_wanted and self.live:
            rid = self._request({"type": "unsubscribe", "channel": name}, REQUEST)
        return rid, self._take()

    def request(self, frame: dict[str, Any]) -> tuple[int, list[Action]]:
        """Send a request on the open connection; its reply comes back as `Settle(id, reply)`."""
        rid = self._request(frame, REQUEST)
        return rid, self._take()

    def forget(self, rid: int | str) -> None:
        """Nobody waits for request `rid` any more: a late reply to it is dropped."""
        if self.link is not None:
            self.link.pending.pop(rid, None)

    def disconnecting(self) -> None:
        """`disconnect()` was called: whatever ends the connection, the client stops."""
        self.closing = True

    def close(self, code: int | None, reason: str) -> list[Action]:
        """Enter `closed`: forget the session, end every iterator (channels stay wanted)."""
        self.session_id = None
        for channel in self.channels:
            channel.close()
        if self.state is not ClientState.CLOSED:
            self._set_state(ClientState.CLOSED, code, reason)
        return self._take()

    # ------------------------------------------------------------ one connection attempt

    def next_attempt(self) -> tuple[str, list[Action]]:
        """The URL to try (round robin, one per attempt), entering `connecting` when not already."""
        url = self.urls[self.next_url % len(self.urls)]
        self.next_url += 1
        self.outcome = Outcome(None, "")
        if self.state is not ClientState.CONNECTING:
            self._set_state(ClientState.CONNECTING, url=url)
        return url, self._take()

    def token_wanted(self, now: float) -> bool:
        """Whether to ask the provider before connecting: no token yet, told to (4009), or near its `exp`."""
        if not self.renewable:
            return False
        if self.token is None or self.force_token:
            return True
        exp = jwt_expiry(self.token)
        return exp is not None and exp - now < EXPIRY_MARGIN

    def token_received(self, token: str) -> None:
        """The provider's new token (a non-empty string), used from now on."""
        self.token, self.force_token = token, False

    def token_failed(self, error: BaseException) -> list[Action]:
        """The provider raised before an attempt: a failed attempt, or the end for a terminal code."""
        terminal = isinstance(error, RealtimeError) and error.code in errors.TERMINAL_TOKEN_CODES
        if terminal:
            self.fatal = error
        self.outcome = Outcome(None, f"token: {error}", stop=terminal)
        self._out.append(Report(error, "token provider"))
        return self._take()

    def connect_failed(self, error: BaseException) -> list[Action]:
        """The socket did not open; a `RealtimeError` (a redirect elsewhere) stops the client."""
        if isinstance(error, RealtimeError):  # the same answer every time
            self.fatal = error
            self.outcome = Outcome(None, f"connect refused: {error}", stop=True)
            self._out.append(Report(error, "connect"))
        else:
            self.outcome = Outcome(ABNORMAL, f"connect failed: {error}")
        return self._take()

    def connected(self, url: str, now: float) -> list[Action]:
        """The socket is open: send `auth`, with `resume` and `positions` when there is a session."""
        self.generation += 1
        link = self.link = Link(self.generation, url, last_frame=now, liveness=self.request_timeout)
        frame: dict[str, Any] = {"type": "auth", "token": self.token}
        if self.session_id:
            frame["resume"] = self.session_id
            positions = self.channels.positions()
            if positions:
                frame["positions"] = positions
                link.positions_sent = set(positions)
        self._request(frame, AUTH)  # the welcome must come within a request timeout (`liveness`)
        return self._take()

    def frame_received(self, text: str | bytes, now: float) -> list[Action]:
        """Handle one frame of the open connection; a malformed one is reported, never raised."""
        link = self.link
        if link is None:
            return []
        link.last_frame = now
        try:
            frame = json.loads(text)
            if not isinstance(frame, dict):
                raise ValueError("frame is not a JSON object")
            kind = frame.get("type")
            if kind == "welcome":
                self._welcome(link, frame)
            elif "id" in frame:
                self._reply(link, frame, text)
            else:
                self._push(link, frame, kind)
        except Exception as exc:
            self._out.append(Report(exc, f"frame {str(text)[:200]!r}"))
        return self._take()

    def tick(self, now: float) -> list[Action]:
        """Check liveness at `now`: no welcome within a request timeout, or a silence past heartbeat + timeout."""
        outcome = self.link.silent(now) if self.link is not None else None
        if outcome is not None:
            self._end(outcome)
        return self._take()

    def closed(self, code: int | None, reason: str = "") -> list[Action]:
        """The socket ended with close frame `code` (None: none came; then the `disconnect` frame's, else 1006)."""
        if self.link is not None:
            self._end(self.link.ended(code, reason))
        return self._take()

    def failed(self, error: BaseException) -> list[Action]:
        """The driver failed inside one connection (a bug): a failed attempt, never the end of the loop."""
        self._out.append(Report(error, "reader"))
        outcome = Outcome(ABNORMAL, f"client error: {error!r}")
        if self.link is not None:
            self._end(outcome)
        else:
            self.outcome = outcome
        return self._take()

    def decide(self) -> list[Action]:
        """After an attempt: the close-code policy (PROTOCOL §10); ends with `Reconnect`, `Stop` or `AskToken`."""
        code = self.outcome.code
        if self.outcome.stop or self.closing:
            return self._stop()
        if code == TOKEN_EXPIRED:
            if not self.renewable:
                return self._stop()  # nothing can renew a fixed token
            self.force_token = True
        elif code == UNAUTHORIZED:
            if not self.renewable or self.retried_unauthorized:
                return self._stop()
            self.retried_unauthorized = True  # reset by the next welcome
            return [AskToken()]
        return self._reconnect() if should_reconnect(code) else self._stop()

    def recheck(self, token: str) -> list[Action]:
        """The provider's answer after a 4501: reconnect with a new token, stop on the same one."""
        if token == self.token:
            return self._stop()  # the provider has nothing new
        self.token = token
        return self._reconnect()

    def recheck_failed(self, error: BaseException) -> list[Action]:
        """The provider raised after a 4501: a failed attempt (it is asked again), or the end if terminal."""
        self._out.append(Report(error, "token provider"))
        self.force_token = True
        if isinstance(error, RealtimeError) and error.code in errors.TERMINAL_TOKEN_CODES:
            return self._stop()
        return self._reconnect()

    # ------------------------------------------------------------ timers and token refresh

    def timer_fired(self, timer: ArmTimer) -> list[Action]:
        """A timer armed by `ArmTimer`: subscribe again after a temporary error, if still wanted and connected."""
        if self.current(timer.generation):
            self.channels.retry(timer.channel)
        return self._take()

    def refresh_delay(self, generation: int, expires_at: float, attempt: int, now: float) -> float | None:
        """After failed refresh `attempt`: seconds until the next, or None (expired, or its connection ended)."""
        remaining = expires_at - now
        if remaining <= 0 or not self.current(generation):
            return None  # the server closes with 4009; the reconnect asks for a fresh token
        return min(backoff_delay(attempt, self.min_delay, self.max_delay, self.random), remaining)

    def refreshed(self, generation: int, reply: dict[str, Any]) -> None:
        """The server accepted the new token: the connection's new expiry."""
        if self.current(generation):
            self.link.expires_at = reply.get("expires_at")

    def refresh_ended(self, generation: int) -> None:
        """The refresh of connection `generation` is over; a later `expiring` starts a new one."""
        if self.current(generation):
            self.link.refreshing = False

    # ------------------------------------------------------------ internals

    def _take(self) -> list[Action]:
        out = list(self._out)
        self._out.clear()
        return out

    def _set_state(self, state: ClientState, code: int | None = None, reason: str = "", **details: Any) -> None:
        change = StateChange(state, self.state, code, reason, **details)  # delay, resumed, url
        self.state, self.last_change = state, change
        self._out.append(Emit("state", change))

    def _retry_delay(self) -> float:
        return backoff_delay(1, self.min_delay, self.max_delay, self.random)

    def _request(self, frame: dict[str, Any], kind: str, channel: str | None = None) -> int:
        rid = next(self._ids)
        self.link.pending[rid] = Pending(kind, channel)
        self._out.append(Send({**frame, "id": rid}))
        return rid

    def _end(self, outcome: Outcome) -> None:
        """The connection is over: channels wait to be restored, requests fail, the socket is closed."""
        self.outcome = outcome
        link, self.link = self.link, None
        for channel in self.channels:
            channel.suspend()
        self._out.extend(Settle(rid, None) for rid in link.settle_all())
        if outcome.code == HEARTBEAT_TIMEOUT:
            self._out.append(Close(HEARTBEAT_TIMEOUT, outcome.reason))
        else:
            self._out.append(Close(1000))

    def _reconnect(self) -> list[Action]:
        delay = backoff_delay(self.attempt, self.min_delay, self.max_delay, self.random)
        self.attempt += 1
        self._set_state(ClientState.DISCONNECTED, self.outcome.code, self.outcome.reason, delay=delay)
        self._out.append(Reconnect(delay))
        return self._take()

    def _stop(self) -> list[Action]:
        return [*self.close(self.outcome.code, self.outcome.reason), Stop()]

    def _welcome(self, link: Link, frame: dict[str, Any]) -> None:
        """Connected: record the session, reset backoff, restore channels, then announce the state."""
        link.pending.pop(frame.get("id"), None)
        link.welcomed = True
        resumed = bool(frame.get("resumed")) and self.session_id is not None
        self.session_id = frame.get("session")
        user = frame.get("user") or {}
        self.user = User(user.get("id"), user.get("username", ""))
        heartbeat = frame.get("heartbeat")
        link.liveness = heartbeat + self.heartbeat_timeout if heartbeat else None
        link.expires_at = frame.get("expires_at")
        self.attempt = 0
        self.retried_unauthorized = False
        self.channels.restore(link.positions_sent if resumed else set())
        # Subscribes go first, so a state callback that subscribes does not send twice.
        self._set_state(ClientState.CONNECTED, resumed=resumed, url=link.url)

    def _reply(self, link: Link, frame: dict[str, Any], text: str | bytes) -> None:
        """A reply: matched by id within this connection only; a reply nobody waits for is dropped."""
        try:
            pending = link.pending.pop(frame["id"])
        except (KeyError, TypeError):
            self.logger.debug("dropped a reply to no pending request: %.200s", text)
            return
        if pending.kind == REQUEST:
            self._out.append(Settle(frame["id"], frame))
        elif pending.kind == SUBSCRIBE:
            self.channels.reply(pending.channel, frame["id"], frame, link.generation)
        elif pending.kind == AUTH and frame.get("type") == "error":
            code = frame.get("code", "error")
            self._out.append(Report(RealtimeError(code, frame.get("message", "")), "auth"))
            if code in AUTH_RETRIED:
                # The server could not check the token (Redis or the database away) and keeps the socket
                # open for another `auth`: come back after the backoff rather than wait for its 4501.
                self._end(Outcome(None, f"auth_{code}"))
            # Otherwise the server closes next (4501 or 4009).

    def _push(self, link: Link, frame: dict[str, Any], kind: Any) -> None:
        """A frame without an id, by an explicit list of types (never `getattr` on the server's string)."""
        if kind in CHANNEL_PUSHES:
            self.channels.pushed(frame)
        elif kind == "ping":
            self._out.append(Send({"type": "pong"}))
        elif kind == "disconnect":
            link.disconnect_frame = frame  # the close frame follows; this is the fallback for its code
        elif kind == "error":
            self._out.append(Report(RealtimeError(frame.get("code", "error"), frame.get("message", "")), "server"))
        elif kind != "expiring":
            self.logger.debug("ignored push %r", kind)
        elif not self.renewable:
            self.logger.warning("the token expires at %s; a fixed token cannot be refreshed", frame.get("expires_at"))
        elif not link.refreshing:
            link.refreshing = True
            self._out.append(Refresh(link.generation, float(frame.get("expires_at") or 0)))
