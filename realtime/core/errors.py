"""Errors of the real-time engine.

Each one becomes exactly one frame through the consumer's single error path
(`realtime.socket.consumer.RealtimeConsumer.handle_error`)::

    RealtimeError                 -> {"type": "error", "code": ...}, socket stays open
    ├── BadRequest                   bad_request
    │   └── TooLarge                 too_large
    ├── Unauthorized                 unauthorized
    ├── Forbidden                    forbidden
    ├── PermissionDenied             permission_denied
    ├── UnknownNamespace             unknown_namespace
    ├── AlreadySubscribed            already_subscribed
    ├── NotSubscribed                not_subscribed
    ├── LimitExceeded                limit_exceeded
    ├── RateLimited                  rate_limited
    └── Unavailable                  unavailable
    Disconnect                    -> {"type": "disconnect", ...} then close with its code

Anything else is a server fault: logged with a reference, `internal` (or close 1011).
A failure of a backing service (Redis, the database) becomes `Unavailable` in one
place, `realtime.support.services.backing_service`.

Pure: imports only `realtime.core.codes`. The rest of the app imports them from here.
"""

from __future__ import annotations

from realtime.core.codes import CloseCode, ErrorCode, RequestId


class RealtimeError(Exception):
    """A request failed; the client gets an `error` frame and the socket stays open."""

    code: ErrorCode = ErrorCode.INTERNAL
    default_message = "Internal error."

    def __init__(self, message: str | None = None, *, request_id: RequestId | None = None) -> None:
        self.message = message or self.default_message
        self.request_id = request_id
        super().__init__(self.message)


class BadRequest(RealtimeError):
    """Malformed frame, unknown type, missing or wrongly typed field, bad channel name."""

    code = ErrorCode.BAD_REQUEST
    default_message = "Bad request."


class TooLarge(BadRequest):
    """The frame is over MAX_FRAME_BYTES."""

    code = ErrorCode.TOO_LARGE
    default_message = "Frame too large."


class Unauthorized(RealtimeError):
    """Not authenticated yet, or an invalid token."""

    code = ErrorCode.UNAUTHORIZED
    default_message = "Not authenticated."


class Forbidden(RealtimeError):
    """A token of another user on `refresh`."""

    code = ErrorCode.FORBIDDEN
    default_message = "That token belongs to another user."


class PermissionDenied(RealtimeError):
    """The namespace's or room's rules forbid this."""

    code = ErrorCode.PERMISSION_DENIED
    default_message = "Permission denied."


class UnknownNamespace(RealtimeError):
    """The channel's namespace is not configured."""

    code = ErrorCode.UNKNOWN_NAMESPACE
    default_message = "Unknown namespace."


class AlreadySubscribed(RealtimeError):
    """This connection is already subscribed to the channel."""

    code = ErrorCode.ALREADY_SUBSCRIBED
    default_message = "Already subscribed."


class NotSubscribed(RealtimeError):
    """This connection is not subscribed to the channel."""

    code = ErrorCode.NOT_SUBSCRIBED
    default_message = "Not subscribed."


class LimitExceeded(RealtimeError):
    """Too many subscriptions on this connection."""

    code = ErrorCode.LIMIT_EXCEEDED
    default_message = "Too many subscriptions on this connection."


class RateLimited(RealtimeError):
    """The connection sends more frames than its rate allows; the frame was dropped."""

    code = ErrorCode.RATE_LIMITED
    default_message = "Too many frames; slow down."


class Unavailable(RealtimeError):
    """A backing service (Redis, the database) is down; retry later."""

    code = ErrorCode.UNAVAILABLE
    default_message = "A backing service is unavailable; retry later."


class Disconnect(Exception):
    """End the connection: send `disconnect` with this close code, then close."""

    def __init__(self, code: CloseCode, reason: str | None = None) -> None:
        self.code = CloseCode(code)
        self.reason = reason or self.code.reason
        super().__init__(f"{int(self.code)} {self.reason}")


def with_id(exc: RealtimeError, request_id: RequestId | None) -> RealtimeError:
    """Attach the request id to an error raised below the handler."""
    exc.request_id = request_id
    return exc
