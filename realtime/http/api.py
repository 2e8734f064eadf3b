"""The real-time HTTP API: publish, history, presence and rooms (docs/protocol.md sections 9 and 10.2).

Sync DRF views; the async part of each request runs in one `async_to_sync` call
(under daphne that is the server's own event loop). Every `RealtimeError` becomes
an HTTP error here, in `RealtimeAPIView.handle_exception`, with the status of
`HTTP_STATUS` and the body of `realtime.http.errors`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.core import protocol
from realtime.core.errors import BadRequest, RealtimeError, Unavailable
from realtime.engine import Slice
from realtime.http.errors import APIError
from realtime.http.views import AppView
from realtime.models import Room
from realtime.namespaces import Namespace, check_access, resolve
from realtime.pubsub.publishing import check_data_size, publish_sync
from realtime.pubsub.reading import read_history, read_presence
from realtime.support import metrics
from realtime.support.services import SERVICE_ERRORS, backing_service

PUBLISH_PERMISSION = "realtime.publish"

# Error code -> HTTP status. A code missing here (already_subscribed, not_subscribed,
# limit_exceeded, internal) cannot come from an HTTP request: it is a server fault, 500.
HTTP_STATUS: dict[protocol.ErrorCode, int] = {
    protocol.ErrorCode.BAD_REQUEST: 400,
    protocol.ErrorCode.UNAUTHORIZED: 401,
    protocol.ErrorCode.FORBIDDEN: 403,
    protocol.ErrorCode.PERMISSION_DENIED: 403,
    protocol.ErrorCode.UNKNOWN_NAMESPACE: 404,
    protocol.ErrorCode.TOO_LARGE: 413,
    protocol.ErrorCode.RATE_LIMITED: 429,
    protocol.ErrorCode.UNAVAILABLE: 503,
}


class RealtimeAPIError(APIError):
    """A `RealtimeError` as an HTTP error: its code and message, the status of `HTTP_STATUS`."""

    def __init__(self, exc: RealtimeError) -> None:
        super().__init__(exc.message)
        self.status_code = HTTP_STATUS[exc.code]
        self.default_code = str(exc.code)
        self.wait = getattr(exc, "retry_after", None)  # seconds: the `Retry-After` header of a 429


def to_api_error(exc: Exception) -> Exception:
    """The HTTP error of a `RealtimeError` with a mapped code; any other exception unchanged."""
    if isinstance(exc, RealtimeError) and exc.code in HTTP_STATUS:
        return RealtimeAPIError(exc)
    return exc


# ---------------------------------------------------------------- JSON values


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with `loads_json`: out-of-range numbers and deep nesting are 400, not 500."""

    def parse(self, stream, media_type: str | None = None, parser_context: Mapping | None = None) -> Any:
        """The body as a JSON value, or `ParseError`."""
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return protocol.loads_json(codecs.getreader(encoding)(stream).read())
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


# ---------------------------------------------------------------- views


class CanPublish(BasePermission):
    """Staff, or a user holding the `realtime.publish` permission."""

    message = f"Publishing over HTTP needs staff status or the {PUBLISH_PERMISSION} permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        """True for staff and for holders of `realtime.publish`."""
        user = request.user
        # `getattr`: a user model built on AbstractBaseUser + PermissionsMixin need not have `is_staff`.
        staff = getattr(user, "is_staff", False)
        return bool(user and user.is_authenticated and (staff or user.has_perm(PUBLISH_PERMISSION)))


class RealtimeAPIView(AppView):
    """Base of the real-time views: a `RealtimeError` becomes a protocol-style HTTP error."""

    def handle_exception(self, exc: Exception) -> Response:
        """Translate realtime errors, then let DRF and `realtime.http.errors` build the response."""
        response = super().handle_exception(to_api_error(exc))
        metrics.http_error(response)
        return response


@contextmanager
def service_errors() -> Iterator[None]:
    """Sync twin of `backing_service`: Redis or database down -> `unavailable` (503)."""
    try:
        yield
    except SERVICE_ERRORS as exc:
        metrics.service_error(exc)
        raise Unavailable() from exc


def publish_request(body: Any) -> tuple[str, Any]:
    """`(channel, data)` of a publish body, checked; `BadRequest`, `UnknownNamespace` or `TooLarge`."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object with `channel` and `data`.")
    if "channel" not in body:
        raise BadRequest("`channel` is required.")
    if "data" not in body:
        raise BadRequest("`data` is required.")
    channel, data = body["channel"], body["data"]
    resolve(channel)
    check_data_size(data)
    return channel, data


class PublishView(RealtimeAPIView):
    """`POST /api/realtime/publish/` `{channel, data}`: publish as the server (`user` null)."""

    permission_classes = [IsAuthenticated, CanPublish]
    parser_classes = [StrictJSONParser]

    def post(self, request: Request) -> Response:
        """201 `{channel, epoch, offset}` of the new publication; 429 over the user's byte quota
        (PUBLISH_BYTES_PER_SECOND, shared with the user's sockets), with `Retry-After`."""
        channel, data = publish_request(request.data)
        with service_errors():
            published = publish_sync(channel, data, user=None, quota=request.user.pk)
        return Response({"channel": channel, "epoch": published.epoch, "offset": published.offset}, status=201)


async def readable_namespace(user: Any, channel: str) -> Namespace:
    """The channel's namespace when `user` may subscribe to it (who may subscribe may read)."""
    namespace, name = resolve(channel)
    await check_access(namespace, user, name, "subscribe")
    return namespace


async def history_of(user: Any, channel: str, since: protocol.Position | None, limit: int | None) -> Slice:
    """The `history` slice `user` asked for, after the subscribe rule."""
    namespace = await readable_namespace(user, channel)
    async with backing_service():
        return await read_history(channel, namespace, since, limit)


async def presence_of(user: Any, channel: str) -> list[dict[str, Any]]:
    """The channel's members, after the subscribe rule; `permission_denied` without presence."""
    return await read_presence(channel, await readable_namespace(user, channel))


def _query_integer(params: Mapping[str, str], name: str, minimum: int, maximum: int | None = None) -> int | None:
    value = params.get(name) or None  # blank counts as absent: `?limit=` from a URL template
    if value is None:
        return None
    # Digits only: int() would also take " 5", "+5", "1_0" and non-ASCII digits.
    number = int(value) if value.isascii() and value.isdigit() else None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise BadRequest(f"`{name}` must be an integer {bounds}.")
    return number


def history_query(params: Mapping[str, str]) -> tuple[protocol.Position | None, int | None]:
    """`(since, limit)` from `?since_epoch=&since_offset=&limit=`; `BadRequest` when malformed."""
    epoch = params.get("since_epoch") or None
    offset = _query_integer(params, "since_offset", 0)
    if (epoch is None) != (offset is None):
        raise BadRequest("`since_epoch` and `since_offset` go together.")
    limit = _query_integer(params, "limit", 1, protocol.MAX_HISTORY_LIMIT)
    return (None if epoch is None else protocol.Position(epoch, offset)), limit


class HistoryView(RealtimeAPIView):
    """`GET /api/realtime/channels/<channel>/history/`: the body of the socket's `history` reply."""

    def get(self, request: Request, channel: str) -> HttpResponse:
        """Publications after `since` (oldest first, at most `limit`), or the newest `limit`."""
        since, limit = history_query(request.query_params)
        stream = async_to_sync(history_of)(request.user, channel, since, limit)
        frame = protocol.history(None, channel, stream.epoch, stream.offset, None)
        # The stored publication texts are spliced in, never parsed and serialised again.
        body = protocol.encode_with_publications(frame, stream.publications)
        return HttpResponse(body, content_type="application/json")


class PresenceView(RealtimeAPIView):
    """`GET /api/realtime/channels/<channel>/presence/`: the body of the socket's `presence` reply."""

    def get(self, request: Request, channel: str) -> Response:
        """One entry per user present on the channel."""
        members = async_to_sync(presence_of)(request.user, channel)
        return Response(protocol.presence(None, channel, members))


def rooms_of(user: Any) -> list[dict[str, str]]:
    """`{channel, name}` of every room `user` is a member of, ordered by slug."""
    rooms = Room.objects.filter(members=user).order_by("slug").values_list("slug", "name")
    return [{"channel": f"room:{slug}", "name": name or slug} for slug, name in rooms]


class RoomsView(RealtimeAPIView):
    """`GET /api/realtime/rooms/`: the rooms (channels `room:<slug>`) the user belongs to."""

    def get(self, request: Request) -> Response:
        """`{"rooms": [{"channel": "room:<slug>", "name": ...}, ...]}`, ordered by slug."""
        with service_errors():
            rooms = rooms_of(request.user)
        return Response({"rooms": rooms})
