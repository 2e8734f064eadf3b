"""The WebSocket consumer: lifecycle, dispatch, send. Thin by design.

Frames are parsed by `realtime.core.protocol`, handled by the functions in
`realtime.socket.handlers` (chosen from an explicit table), and every error goes
through `handle_error`, the one exception-to-frame path. Timers (auth timeout,
heartbeat, token expiry) are one timer per connection in the event loop's heap
(`_tick`), not a task.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer

from realtime.auth.addresses import scope_client_address
from realtime.auth.cache import revoked_since
from realtime.auth.middleware import SUBPROTOCOL
from realtime.core import protocol
from realtime.core.errors import BadRequest, Disconnect, RateLimited, RealtimeError, Unavailable
from realtime.core.limits import ErrorWindow, TokenBucket
from realtime.core.protocol import CloseCode
from realtime.core.users import user_key, wire_user
from realtime.pubsub.switchboard import switchboard
from realtime.runtime.node import node_name
from realtime.sessions import records as resumption
from realtime.sessions import rows as sessions
from realtime.sessions import slots
from realtime.sessions.control import CHANNEL_END, DISCONNECT, django_session_key
from realtime.sessions.live import live
from realtime.signals import SocketSignals, channel_unsubscribed, socket_connected, socket_disconnected
from realtime.socket import handlers
from realtime.socket.admission import PLACE, gate
from realtime.socket.outbox import Outbox, Overflow, close_message
from realtime.socket.state import SocketState
from realtime.socket.subscriptions import Subscriptions
from realtime.support import metrics
from realtime.support.conf import realtime_settings
from realtime.support.services import SERVICE_ERRORS, backing_service
from realtime.support.state import current

if TYPE_CHECKING:
    from realtime.socket.handlers import HandlerSocket

logger = logging.getLogger(__name__)
REVOCATION_RETRY = (0.25, 10.0)  # first and longest delay between attempts of a revocation re-check
# One line per socket opened, authenticated and closed (INFO): who, which session, how it ended.
socket_log = logging.getLogger("realtime.sockets")


class RealtimeConsumer(AsyncConsumer):
    """One socket session of the protocol in docs/protocol.md.

    It is the socket its handlers and subscriptions take (`realtime.socket.state.Socket`,
    `realtime.socket.handlers.HandlerSocket`), structurally: they never import this module.
    """

    # Events this consumer accepts from the server. An explicit table: Channels' default getattr
    # dispatch is not used. Publications and presence come from the process's hub, control events
    # from its switchboard (realtime.pubsub): no channel-layer channel per socket.
    EVENTS = {
        "websocket.connect": "on_connect",
        "websocket.receive": "on_receive",
        "websocket.disconnect": "on_disconnect",
    }

    def __init__(self) -> None:
        self.settings = realtime_settings.values
        self.session_id = sessions.new_session_id()
        self.user: Any = None
        self.auth_method = ""
        self.expires_at: int | None = None
        self.state = SocketState.CONNECTING
        self.close_code: int | None = None
        self.close_reason = ""
        self.row: sessions.SessionRow | None = None  # the session row (written by the background writer)
        self.outbox: Outbox | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None  # the next deadline check (`_tick`)
        # Timers and limits, set when the socket is accepted (on the server's event loop).
        self.clock = time.monotonic
        self.last_received = self.next_ping = self.auth_deadline = 0.0
        self.silence = 0.0  # HEARTBEAT + HEARTBEAT_TIMEOUT: a client quiet that long is gone (4004)
        self.expiring_at: float | None = None
        self.expiry_deadline: float | None = None
        self.session_deadline: float | None = None  # a cookie socket: when its Django session expires
        self.bucket: TokenBucket | None = None
        self.bad_frames: ErrorWindow | None = None
        self.rate_errors: ErrorWindow | None = None
        self.address = ""  # names this socket to control events on any process (`Connection.channel_name`)
        self.control_keys: tuple[str, str | None] | None = None  # (user, Django session) at the switchboard
        self.authenticated_us = 0  # when its current credential was checked (Unix microseconds)
        self.signals = SocketSignals(type(self))  # realtime.signals: this socket's ordered chain
        self.welcomed = False  # `welcome` went out (and `socket_connected` with it)
        self.subscriptions = Subscriptions(self, self.signals)
        self.record: resumption.SessionRecord | None = None  # the session's record for resume, once authenticated
        self.ping_sent_at: float | None = None  # when the heartbeat `ping` was queued, until its `pong`
        self.ended: tuple[int | None, str, str] | None = None  # (code, reason, by whom): set by on_disconnect

    @property
    def closing(self) -> bool:
        """True once a close is under way: no frame or event is handled any more."""
        return self.state in (SocketState.CLOSING, SocketState.CLOSED)

    # ------------------------------------------------------------ lifecycle

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self._serve(scope, receive, send)
        except asyncio.CancelledError:
            # The server is stopping (daphne cancels every application on SIGTERM):
            # tell the client to come back, best effort, then let the task end.
            await self._going_away()
            raise
        finally:
            self._stop_tasks()
            self._log_close()
            if self.welcomed:
                self._signal_disconnected()
            live().discard(self)  # however it ended: the beat renews nothing of it from now on
            self._leave_switchboard()
            if self.outbox is not None:  # counted as open in on_connect
                metrics.connection_ended()

    async def _serve(self, scope, receive, send) -> None:
        """`AsyncConsumer.__call__` without a channel layer: the server's events only, one at a time."""
        self.scope = scope
        self.base_send = send
        self.address = switchboard().address()
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an event by the explicit table. No `aclose_old_connections()` here:
        only session writes touch the database, and they run in `database_sync_to_async`,
        which closes old connections itself; the hot path makes no thread hop."""
        name = self.EVENTS.get(message["type"])
        if name is None:
            raise ValueError(f"No handler for event type {message['type']!r}")
        await getattr(self, name)(message)

    async def on_connect(self, message: dict[str, Any]) -> None:
        """Accept, start the timers, and authenticate from the handshake when it carried credentials."""
        settings = self.settings
        self._loop = asyncio.get_running_loop()
        self.clock = self._loop.time
        self.silence = settings["HEARTBEAT"] + settings["HEARTBEAT_TIMEOUT"]
        now = self.clock()
        self.last_received = now
        self.next_ping = now + settings["HEARTBEAT"]
        self.auth_deadline = now + settings["AUTH_TIMEOUT"]
        self.bucket = TokenBucket(settings["RATE"], settings["RATE_BURST"])
        self.bad_frames = ErrorWindow(settings["MAX_ERRORS"], settings["ERROR_WINDOW"])
        self.rate_errors = ErrorWindow(settings["MAX_ERRORS"], settings["ERROR_WINDOW"])
        self.outbox = Outbox(self.base_send, settings["SEND_QUEUE_BYTES"])
        live().add(self)  # for a graceful shutdown: realtime.sessions.live.say_going_away
        metrics.connection_opened()

        # Close codes only work after accept: closing before it is an HTTP 403. A browser that offered
        # subprotocols fails a handshake whose answer names none of them: choose ours, never the token.
        accept = {"type": "websocket.accept"}
        if SUBPROTOCOL in (self.scope.get("subprotocols") or ()):
            accept["subprotocol"] = SUBPROTOCOL
        await self.base_send(accept)
        self.state = SocketState.OPEN
        self.outbox.start()
        self._rearm()
        client = self.scope.get("client") or ("", "")
        socket_log.info("socket open session=%s client=%s:%s", self.session_id, client[0], client[1])
        await self._guard(None, self._authenticate_handshake)

    async def _authenticate_handshake(self) -> None:
        auth = self.scope.get("auth") or {}
        user = self.scope.get("user")
        if auth.get("error") == "expired":
            raise Disconnect(CloseCode.TOKEN_EXPIRED)
        if auth.get("error") == "unavailable":
            # The database did not answer the handshake's check: say so, and let the client come
            # back after its backoff (1011 reconnects) rather than stop as after a bad token.
            self.send_frame(protocol.error(protocol.ErrorCode.UNAVAILABLE, Unavailable.default_message))
            raise Disconnect(CloseCode.INTERNAL_ERROR, "unavailable")
        if auth.get("error"):
            raise Disconnect(CloseCode.UNAUTHORIZED)
        if user is not None and getattr(user, "is_authenticated", False):
            self.state = SocketState.AUTHENTICATING  # handshake credentials arrived with the connect
            query = parse_qs((self.scope.get("query_string") or b"").decode("latin1"))
            resume = (query.get("resume") or [None])[0]
            positions = None
            if resume and query.get("positions"):
                try:
                    positions = protocol.parse_positions(protocol.loads_json(query["positions"][0]))
                except (ValueError, RealtimeError) as exc:  # resume all the same, from the recorded positions
                    message = exc.message if isinstance(exc, RealtimeError) else f"`positions` is not JSON: {exc}"
                    self.send_frame(protocol.error(protocol.ErrorCode.BAD_REQUEST, message))
            await self.start_session(
                None,
                user,
                auth.get("method") or "",
                auth.get("expires_at"),
                resume,
                positions,
                auth.get("checked_us", 0),
            )

    def _end(self) -> tuple[int | None, str, str]:
        """How the socket ended: (code, reason, by whom)."""
        if self.ended is not None:
            return self.ended
        if self.close_code is not None:  # cancelled after the server began its close (a shutdown)
            return self.close_code, self.close_reason, "server"
        return None, "ended without a close (cancelled)", "server"

    def _signal_disconnected(self) -> None:
        """`channel_unsubscribed` for channels still held (cancelled before `on_disconnect` left them),
        then `socket_disconnected`: queued on the socket's chain, not awaited."""
        for channel in self.subscriptions.active:
            self.signals.send(channel_unsubscribed, user=self.user, session=self.session_id, channel=channel)
        code, reason, _ = self._end()
        self.signals.send(socket_disconnected, user=self.user, session=self.session_id, code=code, reason=reason)

    def _log_close(self) -> None:
        if self.outbox is None:  # never accepted: no line was written for its open either
            return
        code, reason, by = self._end()
        socket_log.info(
            "socket close session=%s user=%s code=%s reason=%s by=%s",
            self.session_id, self.user.pk if self.user is not None else "-", code, reason, by,
        )  # fmt: skip

    async def on_receive(self, message: dict[str, Any]) -> None:
        """One client frame: size, parse, rate, authentication, then its handler."""
        self.last_received = self.clock()
        if self.closing:
            return
        text = message.get("text")
        await self._guard(text, self._handle_frame, text)

    async def _handle_frame(self, text: str | None) -> None:
        try:
            if text is None:
                raise BadRequest("Binary frames are not supported; send JSON text frames.")
            protocol.check_size(text, self.settings["MAX_FRAME_BYTES"])
            request = protocol.parse(text)
        except RealtimeError:
            metrics.received_other()
            raise
        metrics.received(request)
        if not self.bucket.take():
            raise RateLimited(request_id=request.id)
        await handlers.handle(self, request)

    async def on_disconnect(self, message: dict[str, Any]) -> None:
        """The socket is gone: leave the switchboard, record the close, stop."""
        self.state = SocketState.CLOSING
        self._stop_tasks()
        code = self.close_code if self.close_code is not None else message.get("code")
        by_server = self.close_code is not None
        metrics.disconnected(code, by_server=by_server)
        self.ended = (code, self.close_reason or "client_closed", "server" if by_server else "client")
        # Queued before anything is awaited: written with its own code even if this consumer is
        # cancelled below (daphne's application_close_timeout); awaited further down.
        row_closed = None
        if self.row is not None:
            row_closed = sessions.record_close(self.row, code, self.close_reason or "client_closed")
        try:
            await slots.release(self.address)
        except Exception as exc:  # the slot lapses on its own after three beats
            metrics.service_error(exc)
            logger.warning("could not release the connection slot of %s: %r", self.session_id, exc)
        if self.record is not None:
            try:
                await self.record.close(code)
            except Exception as exc:  # without it the client resumes from its own positions, or recovers
                metrics.service_error(exc)
                logger.warning("could not keep session %s for a resume: %r", self.session_id, exc)
        try:
            await self.subscriptions.close(own_presence=not (self.record and self.record.taken_over))
        except Exception as exc:  # best effort: presence lapses on its own
            metrics.service_error(exc)
            logger.warning("could not leave the channels of %s: %r", self.session_id, exc)
        self._leave_switchboard()
        if row_closed is not None:  # (the writer logs its own failures; the cleanup closes the row then)
            await row_closed
        self.state = SocketState.CLOSED
        raise StopConsumer()

    # ------------------------------------------------------------ control events (realtime.pubsub.switchboard)

    def on_control(self, event: dict[str, Any]) -> None:
        """A revocation, an admin action, another socket resuming this session, or a lost channel."""
        if self.closing:
            return
        if event["do"] == DISCONNECT:
            if event.get("taken_over") and self.record is not None:
                self.record.mark_taken_over()
            self._close_now(CloseCode(event["code"]), event.get("reason"), drop_queued=False)
        elif event["do"] == CHANNEL_END:
            self._background(self.subscriptions.end(event["channel"], event["reason"]))

    def control_gap(self) -> None:
        """Control events may have been lost (the fan-out connection broke): was the user revoked meanwhile?"""
        if not self.closing and self.user is not None:
            self._background(self._check_revocation())

    async def _check_revocation(self) -> None:
        # Until it can be made: the gap is often a failover, and the user's key may be on a shard that is
        # still moving. A check that fails must not close the socket (1011 would send every client back).
        delay = REVOCATION_RETRY[0]
        while not self.closing:
            try:
                revoked = await revoked_since(self.user, self.authenticated_us)
            except SERVICE_ERRORS as exc:
                metrics.service_error(exc)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(REVOCATION_RETRY[1], delay * 2)
                continue
            if revoked and not self.closing:
                self._close_now(CloseCode.FORBIDDEN, None, drop_queued=False)
            return

    def _background(self, step) -> None:
        """Run `step` beside the socket's events, its errors going the one error path."""
        tasks = background_tasks()
        task = asyncio.ensure_future(self._guard(None, lambda: step))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _leave_switchboard(self) -> None:
        if self.control_keys is not None:
            user, session = self.control_keys
            self.control_keys = None
            switchboard().leave(self, self.address, user, session)

    # ------------------------------------------------------------ session

    async def start_session(
        self,
        request_id,
        user,
        method: str,
        expires_at: int | None,
        resume: str | None = None,
        positions: dict[str, protocol.Position] | None = None,
        checked_us: int = 0,
    ) -> None:
        """Mark the socket authenticated (resuming `resume` when it can), join the switchboard, send `welcome`.

        A resumed session gets its subscriptions back, each replayed from the client's own
        position in `positions` when it gave one, else from the last one recorded. The
        connection limit is a slot taken in the engine (no database query), and the session
        row is queued for the background writer: nothing here waits for the database.
        """
        headers = dict(self.scope.get("headers") or [])
        row = {
            "channel_name": self.address,
            "node": node_name(),
            "remote_addr": scope_client_address(self.scope) or None,  # behind TRUSTED_PROXY_COUNT proxies too
            "user_agent": headers.get(b"user-agent", b"").decode("latin1"),
            "user": user,
            "auth_method": method,
            "expires_at": expires_at,
        }
        try:
            async with backing_service(request_id):
                refused = await slots.admit(user.pk, self.address)
        except Unavailable as exc:
            if method == "frame":
                # Not authenticated, and told so (`unavailable`): the socket stays open, and the
                # client may send `auth` again within a fresh AUTH_TIMEOUT (or reconnect).
                self.credentials_withdrawn()
                raise
            # Handshake credentials cannot be sent again on this socket: close so that the
            # client comes back after its backoff (1011 reconnects; 4501 would stop it).
            self.send_frame(protocol.error(exc.code, exc.message))
            raise Disconnect(CloseCode.INTERNAL_ERROR, "unavailable") from exc
        if refused is not None:  # no session row: a flood of refused connects must not fill the table
            metrics.connect_refused(refused)
            raise Disconnect(refused)
        restored = await resumption.take(resume, self.address, user.pk)
        if resume:
            metrics.resumed(restored is not None)
        if restored is not None:
            self.session_id = resume
            for channel, position in (positions or {}).items():
                restored[channel] = [position.epoch, position.offset]
        if not self.closing:  # (a socket already going away, e.g. at shutdown, leaves no row behind)
            self.row = sessions.open_row(session_id=self.session_id, resumed=restored is not None, **row)
        self.user = user
        if self.state in (SocketState.OPEN, SocketState.AUTHENTICATING):  # not when a close began meanwhile
            self.state = SocketState.AUTHENTICATED
        gate().release(self.scope.get(PLACE))  # authenticated: no longer one of the unauthenticated
        self.auth_method = method
        self.record = resumption.SessionRecord(self.session_id, self.address, user.pk, self.subscriptions.positions)
        self.record.open()
        keys: tuple[str, str | None] = (user_key(user.pk), None)
        django_session = self.scope.get("django_session") if method == "cookie" else None
        if django_session:  # the session cookie: the socket ends with that session (PROTOCOL section 2)
            keys = (keys[0], django_session_key(django_session["key"]))
        try:
            await switchboard().join(self, self.address, *keys, since_us=checked_us)
            self.control_keys = keys
        except SERVICE_ERRORS as exc:  # without control events no revocation would reach it: not admitted
            metrics.service_error(exc)
            logger.warning("could not hear control events for %s: %r", self.session_id, exc)
            self.send_frame(protocol.error(protocol.ErrorCode.UNAVAILABLE, Unavailable.default_message, request_id))
            raise Disconnect(CloseCode.INTERNAL_ERROR, "unavailable") from exc
        # The deadlines after the last await: no `expiring` (or close) can go out before `welcome`.
        self.set_expiry(expires_at, checked_us)
        if django_session and django_session["expires_at"] is not None:
            self.session_deadline = self.clock() + (django_session["expires_at"] - time.time())
            self._rearm()
        self.send_frame(
            protocol.welcome(
                request_id,
                session=self.session_id,
                user=wire_user(user),  # any primary key: a UUID or string id as a JSON string
                expires_at=expires_at,
                heartbeat=self.settings["HEARTBEAT"],
                resume_window=self.settings["RESUME_WINDOW"],
                resumed=restored is not None,
            )
        )
        socket_log.info(
            "socket auth session=%s user=%s method=%s resumed=%s",
            self.session_id, user.pk, method, "yes" if restored is not None else "no",
        )  # fmt: skip
        self.welcomed = True
        self.signals.send(socket_connected, user=user, session=self.session_id, scope=self.scope)
        if restored:
            await self.subscriptions.restore(restored)

    def set_expiry(self, expires_at: int | None, checked_us: int) -> None:
        """Schedule `expiring` and the 4009 close for a token that ends at `expires_at`, checked at `checked_us`."""
        self.authenticated_us = checked_us
        self.expires_at = expires_at
        if expires_at is None:
            self.expiring_at = self.expiry_deadline = None
        else:
            deadline = self.clock() + (expires_at - time.time())
            self.expiry_deadline = deadline
            self.expiring_at = deadline - self.settings["REFRESH_LEAD"]
        self._rearm()

    def credentials_arrived(self) -> None:
        """An `auth` frame came: from now on its check's outcome decides, not AUTH_TIMEOUT."""
        if self.state is SocketState.OPEN:
            self.state = SocketState.AUTHENTICATING

    def credentials_withdrawn(self) -> None:
        """The check could not be made (`unavailable`): unauthenticated again, with a fresh AUTH_TIMEOUT."""
        if self.state is SocketState.AUTHENTICATING:
            self.state = SocketState.OPEN
            self.auth_deadline = self.clock() + self.settings["AUTH_TIMEOUT"]
            self._rearm()

    # ------------------------------------------------------------ sending

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Queue one frame for the client."""
        metrics.sent_frame(frame)
        self.send_text(protocol.encode(frame))

    def send_text(self, text: str, size: int | None = None) -> None:
        """Queue an already serialised frame (of `size` UTF-8 bytes, when known); a client that lets the
        queue overflow is cut off (4013)."""
        try:
            self.outbox.put_text(text, size)
        except Overflow:
            metrics.slow_cutoff()
            self._close_now(CloseCode.SLOW, None, drop_queued=True)

    async def close_with(self, code: CloseCode, reason: str | None = None) -> None:
        """Send `disconnect` after what is queued, then close with `code`."""
        self._close_now(code, reason, drop_queued=False)

    def _close_now(self, code: CloseCode, reason: str | None, *, drop_queued: bool) -> None:
        if self.closing:
            return
        self.state = SocketState.CLOSING
        self.close_code = int(code)
        self.close_reason = reason or code.reason
        metrics.sent_disconnect()
        self.outbox.close(
            [
                {"type": "websocket.send", "text": protocol.encode(protocol.disconnect(code, reason))},
                close_message(code, self.close_reason),
            ],
            drop_queued=drop_queued,
        )

    def go_away(self) -> bool:
        """The server is stopping: `disconnect` 1001 after what is queued, then close (realtime.sessions.live)."""
        if self.outbox is None or self.closing:
            return False
        self._close_now(CloseCode.GOING_AWAY, None, drop_queued=False)
        return True

    async def _going_away(self) -> None:
        if self.outbox is None or self.closing:
            return
        self.state = SocketState.CLOSING
        self.close_code, self.close_reason = int(CloseCode.GOING_AWAY), CloseCode.GOING_AWAY.reason
        self.outbox.stop()
        metrics.sent_disconnect()
        try:
            await self.base_send(
                {"type": "websocket.send", "text": protocol.encode(protocol.disconnect(CloseCode.GOING_AWAY))}
            )
            await self.base_send(close_message(CloseCode.GOING_AWAY, CloseCode.GOING_AWAY.reason))
        except Exception:  # the transport may already be gone
            logger.debug("could not say goodbye to %s", self.session_id)

    # ------------------------------------------------------------ errors

    async def _guard(self, text: str | None, step, *args) -> None:
        """Run `step`; turn what it raises into frames (the one error path)."""
        try:
            await step(*args)
        except Exception as exc:
            await self.handle_error(exc, text)

    async def handle_error(self, exc: Exception, text: str | None = None) -> None:
        """A known error becomes an `error` frame; a `Disconnect` closes; anything else is 1011."""
        if isinstance(exc, RealtimeError):
            self.send_frame(protocol.error(exc.code, exc.message, exc.request_id))
            if isinstance(exc, RateLimited):
                if self.rate_errors.add():
                    await self.close_with(CloseCode.RATE_LIMITED)
            elif isinstance(exc, BadRequest) and self.bad_frames.add():
                await self.close_with(CloseCode.BAD_REQUEST)
        elif isinstance(exc, Disconnect):
            await self.close_with(exc.code, exc.reason)
        else:
            metrics.service_error(exc)
            ref = uuid.uuid4().hex[:12]
            frame = protocol.redact(text)  # never a token in a log line
            logger.error("Unhandled error on %s (ref %s), frame %.200r", self.session_id, ref, frame, exc_info=exc)
            self.send_frame(protocol.error(protocol.ErrorCode.INTERNAL, f"Internal server error (ref {ref})."))
            await self.close_with(CloseCode.INTERNAL_ERROR)

    # ------------------------------------------------------------ timers

    def _rearm(self) -> None:
        """(Re)schedule the next check at the nearest deadline: one timer in the loop's heap, no task."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.closing or self._loop is None:
            return
        deadlines = [self.next_ping, self.last_received + self.silence]
        if self.state is SocketState.OPEN:
            deadlines.append(self.auth_deadline)
        if self.expiring_at is not None:
            deadlines.append(self.expiring_at)
        if self.expiry_deadline is not None:
            deadlines.append(self.expiry_deadline)
        if self.session_deadline is not None:
            deadlines.append(self.session_deadline)
        self._timer = self._loop.call_at(min(deadlines), self._tick)

    def _tick(self) -> None:
        """Auth timeout, heartbeat pings, silence timeout, `expiring`, token expiry, at their deadlines.

        Called by the event loop's timer (asyncio keeps every socket's next deadline in one
        heap: a timer wheel for the whole process) instead of a task sleeping per socket. A
        frame received moves no timer: silence is measured here, from `last_received`.
        """
        self._timer = None
        if self.closing:
            return
        try:
            self._check_deadlines()
        except Exception:  # a loop callback: nothing above would see it, and the timer would stop
            logger.exception("deadline check failed on %s", self.session_id)
            self._close_now(CloseCode.INTERNAL_ERROR, None, drop_queued=False)

    def _check_deadlines(self) -> None:
        now = self.clock()
        # Only while no credentials have arrived: once they are being checked (the database
        # thread may be busy in a reconnect storm) the check's outcome decides.
        if self.state is SocketState.OPEN and now >= self.auth_deadline:
            self._close_now(CloseCode.UNAUTHORIZED, "auth_timeout", drop_queued=False)
            return
        if now - self.last_received >= self.silence:
            self._close_now(CloseCode.HEARTBEAT_TIMEOUT, None, drop_queued=False)
            return
        if self.expiry_deadline is not None and now >= self.expiry_deadline:
            self._close_now(CloseCode.TOKEN_EXPIRED, None, drop_queued=False)
            return
        if self.session_deadline is not None and now >= self.session_deadline:
            self._close_now(CloseCode.FORBIDDEN, "session_expired", drop_queued=False)
            return
        if self.expiring_at is not None and now >= self.expiring_at:
            self.expiring_at = None
            self.send_frame(protocol.expiring(self.expires_at))
        if now >= self.next_ping:
            self.next_ping = now + self.settings["HEARTBEAT"]
            self.send_frame(protocol.ping())
            self.ping_sent_at = now
            self.subscriptions.ping_queued()  # its pong acknowledges what was queued before it
        self._rearm()

    def _stop_tasks(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.outbox is not None:
            self.outbox.stop()


def background_tasks() -> set[asyncio.Task]:
    """The control steps running beside their sockets on this loop (held, so none is collected mid-way)."""
    return current().loop_part((__name__, "background"), set)


if TYPE_CHECKING:

    def _a_consumer_is_a_handler_socket(consumer: RealtimeConsumer) -> HandlerSocket:
        return consumer  # a type checker's proof; nothing at run time
