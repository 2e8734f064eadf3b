"""What each client request does. One function per request type, chosen from `HANDLERS`.

A handler gets the socket (`HandlerSocket`: the consumer is one) and the typed request; it
replies through `consumer.send_frame` and raises `RealtimeError` / `Disconnect` for the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from realtime.auth.cache import authenticate_token
from realtime.auth.tokens import CredentialsError, ExpiredCredentials
from realtime.core import protocol
from realtime.core.errors import (
    BadRequest,
    Disconnect,
    Forbidden,
    RateLimited,
    Unauthorized,
    Unavailable,
    with_id,
)
from realtime.core.protocol import CloseCode
from realtime.pubsub.publishing import publish
from realtime.pubsub.reading import read_history, read_presence
from realtime.sessions import rows as sessions
from realtime.socket.state import Socket
from realtime.support import metrics
from realtime.support.services import backing_service

if TYPE_CHECKING:
    from realtime.socket.subscriptions import Subscriptions


class HandlerSocket(Socket, Protocol):
    """What a handler uses of its socket: the `Socket`, and its subscriptions."""

    subscriptions: Subscriptions


Handler = Callable[[HandlerSocket, Any], Awaitable[None]]

# Requests an unauthenticated socket may send; everything else is `unauthorized`.
OPEN_REQUESTS = (protocol.Auth, protocol.Ping, protocol.Pong)


async def handle(consumer: HandlerSocket, request: protocol.Request) -> None:
    """Run the handler of `request`, after the authentication gate."""
    if consumer.user is None and not isinstance(request, OPEN_REQUESTS):
        raise Unauthorized("Authenticate first: send an `auth` frame.", request_id=request.id)
    with metrics.timed(request):
        await HANDLERS[type(request)](consumer, request)


async def handle_auth(consumer: HandlerSocket, request: protocol.Auth) -> None:
    """`auth`: authenticate the socket; a bad token ends it (4501, or 4009 when expired)."""
    if consumer.user is not None:
        raise BadRequest("Already authenticated; use `refresh` to replace the token.", request_id=request.id)
    consumer.credentials_arrived()  # the user lookup may wait for a busy database thread: no auth timeout
    try:
        async with backing_service(request.id):  # the database away: `unavailable`, and `auth` may be sent again
            result = await authenticate_token(request.token)
    except Unavailable:
        consumer.credentials_withdrawn()
        raise
    except CredentialsError as exc:
        consumer.send_frame(protocol.error(protocol.ErrorCode.UNAUTHORIZED, str(exc), request.id))
        expired = isinstance(exc, ExpiredCredentials)
        raise Disconnect(CloseCode.TOKEN_EXPIRED if expired else CloseCode.UNAUTHORIZED) from exc
    await consumer.start_session(
        request.id, result.user, "frame", result.expires_at, request.resume, request.positions, result.checked_us
    )


async def handle_refresh(consumer: HandlerSocket, request: protocol.Refresh) -> None:
    """`refresh`: a fresh token of the same user moves the expiry; anything else changes nothing."""
    try:
        result = await authenticate_token(request.token)
    except CredentialsError as exc:
        raise Unauthorized(str(exc), request_id=request.id) from exc
    if result.user.pk != consumer.user.pk:
        raise Forbidden(request_id=request.id)
    sessions.record_refresh(consumer.row, result.expires_at)  # queued: written in the background
    consumer.set_expiry(result.expires_at, result.checked_us)
    consumer.send_frame(protocol.refreshed(request.id, result.expires_at))


async def handle_ping(consumer: HandlerSocket, request: protocol.Ping) -> None:
    """`ping` from the client: answer `pong` with its id."""
    consumer.send_frame(protocol.pong(request.id))


async def handle_pong(consumer: HandlerSocket, request: protocol.Pong) -> None:
    """`pong`: the receipt itself proved the client alive; one answering the heartbeat times its round trip,
    and acknowledges what was sent before that ping (the positions a resume replays after)."""
    sent_at, consumer.ping_sent_at = consumer.ping_sent_at, None
    if sent_at is not None:
        metrics.pong_after(consumer.clock() - sent_at)
    consumer.subscriptions.pong_received()


async def handle_subscribe(consumer: HandlerSocket, request: protocol.Subscribe) -> None:
    """`subscribe`, optionally recovering from a position."""
    await consumer.subscriptions.subscribe(request)


async def handle_unsubscribe(consumer: HandlerSocket, request: protocol.Unsubscribe) -> None:
    """`unsubscribe`."""
    await consumer.subscriptions.unsubscribe(request)


async def handle_publish(consumer: HandlerSocket, request: protocol.Publish) -> None:
    """`publish` where the namespace allows this user; the position comes back in `published`.

    Over the user's PUBLISH_BYTES_PER_SECOND (all of the user's sockets and HTTP publishes on
    every process together) it is `rate_limited` and not published, an error that counts
    toward the 4008 close as the frame rate's do (`handle_error`).
    """
    subs = consumer.subscriptions
    namespace, name = await subs.resolve(request.channel, request.id)
    await subs.check_publish(namespace, name, request.channel, request.id)
    user = consumer.user.pk
    try:
        async with backing_service(request.id):
            published = await publish(request.channel, request.data, user=user, quota=user)
    except RateLimited as exc:
        raise with_id(exc, request.id) from None
    consumer.send_frame(protocol.published(request.id, request.channel, published.epoch, published.offset))


async def handle_history(consumer: HandlerSocket, request: protocol.History) -> None:
    """`history`: after `since`, or the newest `limit` (whoever may subscribe may read it)."""
    subs = consumer.subscriptions
    namespace, name = await subs.resolve(request.channel, request.id)
    await subs.check_subscribe(namespace, name, request.id)
    async with backing_service(request.id):
        stream = await read_history(request.channel, namespace, request.since, request.limit)
    frame = protocol.history(request.id, request.channel, stream.epoch, stream.offset, None)
    metrics.sent("history")
    consumer.send_text(protocol.encode_with_publications(frame, stream.publications))


async def handle_presence(consumer: HandlerSocket, request: protocol.Presence) -> None:
    """`presence`: one entry per user on the channel."""
    subs = consumer.subscriptions
    namespace, name = await subs.resolve(request.channel, request.id)
    await subs.check_subscribe(namespace, name, request.id)
    members = await read_presence(request.channel, namespace, request.id)
    consumer.send_frame(protocol.presence(request.id, request.channel, members))


HANDLERS: dict[type, Handler] = {
    protocol.Auth: handle_auth,
    protocol.Refresh: handle_refresh,
    protocol.Ping: handle_ping,
    protocol.Pong: handle_pong,
    protocol.Subscribe: handle_subscribe,
    protocol.Unsubscribe: handle_unsubscribe,
    protocol.Publish: handle_publish,
    protocol.History: handle_history,
    protocol.Presence: handle_presence,
}
