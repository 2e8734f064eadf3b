"""Prometheus metrics of the real-time server (docs/operations.md "Metrics"; the view: `realtime.http.metrics`).

Every metric is defined here, once, at import; every label value is from a closed
set (the protocol's frame types, error codes and close codes, plus `"other"`), never
a user, session or channel name. The children of the hot metrics are resolved at
import into plain dicts, so counting a frame is a dict lookup and prometheus-client's
own increment: no allocation, no lock of ours.

Where they are counted (the callers are one line each):

- the consumer (`realtime.socket.consumer`): connections, disconnects, connects refused, frames in, every
  frame built from a dict (`send_frame` knows its type, and counts `error` frames by
  code), slow-client cut-offs, resumes, ping round trips, service errors it catches;
- `realtime.socket.handlers`: request latency by request type, and the pre-serialised
  `history` reply;
- the delivery and subscription code (`realtime.socket.subscriptions`, `realtime.pubsub.publishing`):
  `published()`, `delivered()`, `sent("subscribed")`, `recovery()`, `gap()`,
  `service_error()`: these take no parsing, the caller passes what it knows;
- `realtime.http.api`: HTTP API errors by code, service errors.

Each process counts its own. With `PROMETHEUS_MULTIPROC_DIR` set (before the process
starts), prometheus-client's multiprocess mode is used instead: every process of the
host writes its values to files in that directory and any process's `/metrics`
answers for all of them.
"""

from __future__ import annotations

import atexit
import os
import time
from typing import Any

import redis
from django.db import DatabaseError
from prometheus_client import Counter, Gauge, Histogram

from realtime.core import protocol
from realtime.core.codes import CloseCode, ErrorCode

OTHER = "other"
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Client frame types (PROTOCOL section 4), by the request class `protocol.parse` returns.
REQUEST_TYPES: dict[type, str] = {
    protocol.Auth: "auth",
    protocol.Refresh: "refresh",
    protocol.Ping: "ping",
    protocol.Pong: "pong",
    protocol.Subscribe: "subscribe",
    protocol.Unsubscribe: "unsubscribe",
    protocol.Publish: "publish",
    protocol.History: "history",
    protocol.Presence: "presence",
}
# Server frame types.
FRAME_TYPES = (
    "welcome",
    "error",
    "disconnect",
    "ping",
    "pong",
    "expiring",
    "refreshed",
    "subscribed",
    "unsubscribed",
    "published",
    "history",
    "presence",
    "message",
    "join",
    "leave",
)
# Error codes of `error` frames and of HTTP error bodies (realtime.http.errors adds two of its own).
ERROR_CODES = tuple(str(code) for code in ErrorCode) + ("not_found", "method_not_allowed")
# Close codes kept as they are: the protocol's, and the standard ones (RFC 6455 section 7.4).
KNOWN_CLOSE_CODES = frozenset(int(code) for code in CloseCode) | frozenset(range(1000, 1016))

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# ---------------------------------------------------------------- the metrics

CONNECTIONS_OPEN = Gauge(
    "realtime_connections_open",
    "WebSocket connections accepted and not yet ended, in this process.",
    multiprocess_mode="livesum",
)
CONNECTIONS_ACCEPTED = Counter("realtime_connections_accepted", "WebSocket connections accepted.")
DISCONNECTS = Counter(
    "realtime_disconnects",
    "WebSocket connections ended, by close code (protocol and standard codes, else `other`; `none` when the "
    "transport gave none) and by who closed (`server` or `client`).",
    ["code", "initiator"],
)
FRAMES_RECEIVED = Counter(
    "realtime_frames_received",
    "Client frames handled, by type (`other`: binary, too large, not JSON or of no known type).",
    ["type"],
)
FRAMES_SENT = Counter("realtime_frames_sent", "Frames queued for clients, by type.", ["type"])
ERRORS = Counter(
    "realtime_errors",
    "Errors answered, by code: `error` frames on sockets (`transport=ws`) and HTTP API error bodies (`http`).",
    ["code", "transport"],
)
REQUEST_SECONDS = Histogram(
    "realtime_request_duration_seconds",
    "Time to handle a client request, from parsed frame to reply queued, by request type.",
    ["type"],
    buckets=LATENCY_BUCKETS,
)
PUBLICATIONS = Counter("realtime_publications", "Publications accepted by this process (socket, HTTP, code).")
DELIVERIES = Counter("realtime_deliveries", "Live publications (`message` frames) queued for subscribed sockets.")
PUBLISH_TO_SEND = Histogram(
    "realtime_publish_to_send_seconds",
    "From a publication's `ts` to its `message` frames queued for this process's subscribers (live delivery).",
    buckets=LAG_BUCKETS,
)
RECOVERIES = Counter(
    "realtime_recoveries",
    "Subscriptions with a position to recover from (`subscribe` with `recover`, or restored by a resume): "
    "whether every missed publication was recovered, and whether there were any.",
    ["recovered", "publications"],
)
RECOVERED_PUBLICATIONS = Counter(
    "realtime_recovered_publications", "Publications replayed to recovering subscriptions."
)
GAPS = Counter(
    "realtime_gaps",
    "Live deliveries that skipped ahead (a message lost on the way): filled from history, or not (the "
    "subscription ended with `insufficient_state`).",
    ["filled"],
)
RESUMES = Counter("realtime_resumes", "Authentications that asked to resume a session: resumed or not.", ["resumed"])
SLOW_CUTOFFS = Counter(
    "realtime_slow_client_cutoffs", "Connections cut off because their send queue overflowed (close 4013)."
)
UNAUTHENTICATED = Gauge(
    "realtime_unauthenticated_connections", "Sockets of this process without credentials yet (MAX_UNAUTHENTICATED)."
)
UNAUTHENTICATED_LIMIT = Gauge(
    "realtime_unauthenticated_limit",
    "MAX_UNAUTHENTICATED: the process is saturated while realtime_unauthenticated_connections is at it.",
    multiprocess_mode="max",
)
UNAUTHENTICATED_REFUSED = Counter(
    "realtime_unauthenticated_refused",
    "Handshakes without credentials refused (403): the process or their address held its maximum.",
)
CONNECTS_REFUSED = Counter(
    "realtime_connects_refused",
    "Authenticated connects refused before their session began (no session row is written), by reason: "
    "`rate_limited` (4008, over CONNECT_RATE/CONNECT_BURST) or `too_many_connections` (4529).",
    ["reason"],
)
PING_RTT = Histogram(
    "realtime_ping_rtt_seconds",
    "From the server's heartbeat `ping` queued to the client's `pong` received.",
    buckets=LAG_BUCKETS,
)
SERVICE_ERRORS = Counter(
    "realtime_service_errors",
    "Failures of a backing service caught by the server: `redis` (the engine or channels-redis), "
    "`channel_layer` (its own errors, e.g. a full channel), `database`, `network` (other OS errors).",
    ["service"],
)

# Children resolved once: the hot paths never call `.labels()`.
_RECEIVED = {cls: FRAMES_RECEIVED.labels(name) for cls, name in REQUEST_TYPES.items()}
_RECEIVED_OTHER = FRAMES_RECEIVED.labels(OTHER)
_SENT = {name: FRAMES_SENT.labels(name) for name in FRAME_TYPES}
_SENT_OTHER = FRAMES_SENT.labels(OTHER)
_SENT_MESSAGE = _SENT["message"]
_SENT_DISCONNECT = _SENT["disconnect"]
_WS_ERRORS = {code: ERRORS.labels(code, "ws") for code in ERROR_CODES}
_WS_ERRORS_OTHER = ERRORS.labels(OTHER, "ws")
_HTTP_ERRORS = {code: ERRORS.labels(code, "http") for code in ERROR_CODES}
_HTTP_ERRORS_OTHER = ERRORS.labels(OTHER, "http")
_LATENCY = {cls: REQUEST_SECONDS.labels(name) for cls, name in REQUEST_TYPES.items()}
_LATENCY_OTHER = REQUEST_SECONDS.labels(OTHER)
_RESUMES = {True: RESUMES.labels("true"), False: RESUMES.labels("false")}
_RECOVERIES = {
    (recovered, bool(any_)): RECOVERIES.labels(str(recovered).lower(), str(any_).lower())
    for recovered in (True, False)
    for any_ in (True, False)
}
_GAPS = {True: GAPS.labels("true"), False: GAPS.labels("false")}
_CONNECTS_REFUSED = {
    code: CONNECTS_REFUSED.labels(code.reason) for code in (CloseCode.RATE_LIMITED, CloseCode.TOO_MANY_CONNECTIONS)
}
for _service in ("redis", "channel_layer", "database", "network"):
    SERVICE_ERRORS.labels(_service)  # every series exists from the start, at 0
for _code in sorted(int(code) for code in CloseCode):
    for _initiator in ("server", "client"):
        DISCONNECTS.labels(str(_code), _initiator)


# ---------------------------------------------------------------- the socket


def connection_opened() -> None:
    """A socket is being accepted."""
    CONNECTIONS_ACCEPTED.inc()
    CONNECTIONS_OPEN.inc()


def connection_ended() -> None:
    """A socket's consumer ended (whatever the way: once per `connection_opened`)."""
    CONNECTIONS_OPEN.dec()


def close_code_label(code: int | None) -> str:
    """The bounded label of a close code: the protocol's and the standard ones as they are."""
    if code is None:
        return "none"
    return str(code) if code in KNOWN_CLOSE_CODES else OTHER


def disconnected(code: int | None, by_server: bool) -> None:
    """A socket ended with `code`, closed by the server (`by_server`) or by the client."""
    DISCONNECTS.labels(close_code_label(code), "server" if by_server else "client").inc()


def received(request: protocol.Request) -> None:
    """A client frame parsed into `request`."""
    _RECEIVED.get(type(request), _RECEIVED_OTHER).inc()


def received_other() -> None:
    """A client frame that did not parse (binary, too large, not JSON, unknown type)."""
    _RECEIVED_OTHER.inc()


def sent_frame(frame: dict[str, Any]) -> None:
    """A frame built as a dict is being queued: counted by its type, an `error` also by its code."""
    kind = frame["type"]
    _SENT.get(kind, _SENT_OTHER).inc()
    if kind == "error":
        _WS_ERRORS.get(frame["code"], _WS_ERRORS_OTHER).inc()


def sent(kind: str, count: int = 1) -> None:
    """`count` pre-serialised frames of type `kind` (e.g. `subscribed`, `history`) are being queued."""
    _SENT.get(kind, _SENT_OTHER).inc(count)


def sent_disconnect() -> None:
    """The `disconnect` frame before a close."""
    _SENT_DISCONNECT.inc()


def timed(request: protocol.Request):
    """A context manager observing the request's handling time: `with metrics.timed(request): ...`."""
    return _LATENCY.get(type(request), _LATENCY_OTHER).time()


def unauthenticated_refused() -> None:
    """A handshake without credentials found no place (MAX_UNAUTHENTICATED[_PER_ADDRESS]): refused."""
    UNAUTHENTICATED_REFUSED.inc()


def connect_refused(code: CloseCode) -> None:
    """An authenticated connect was refused with `code` (4008 over the user's connect rate, 4529 at the limit)."""
    _CONNECTS_REFUSED[code].inc()


def slow_cutoff() -> None:
    """A socket's send queue overflowed: it is cut off with 4013."""
    SLOW_CUTOFFS.inc()


def resumed(ok: bool) -> None:
    """An authentication asked to resume a session; `ok`: it was resumed."""
    _RESUMES[ok].inc()


def pong_after(seconds: float) -> None:
    """The client answered the heartbeat `ping` after `seconds`."""
    PING_RTT.observe(seconds)


# ---------------------------------------------------------------- publications


def published() -> None:
    """A publication was accepted (appended to its channel's history)."""
    PUBLICATIONS.inc()


def delivered(count: int = 1, ts_ms: int | None = None) -> None:
    """`count` `message` frames of one publication were queued for sockets of this process.

    `ts_ms`, the publication's `ts` (milliseconds since the epoch), observes the
    publish-to-send lag once per call: call it once per publication per fan-out (or
    per delivery on a per-socket path), with `ts_ms=None` for gap fills from history.
    """
    DELIVERIES.inc(count)
    _SENT_MESSAGE.inc(count)
    if ts_ms is not None:
        PUBLISH_TO_SEND.observe(max(0.0, time.time() - ts_ms / 1000))


def recovery(recovered: bool, publications: int) -> None:
    """A subscription recovered from a position: `recovered` as in its `subscribed`, `publications` replayed."""
    _RECOVERIES[(recovered, publications > 0)].inc()
    if publications:
        RECOVERED_PUBLICATIONS.inc(publications)


def gap(filled: bool) -> None:
    """A live delivery skipped ahead; `filled`: history held what was missing."""
    _GAPS[filled].inc()


# ---------------------------------------------------------------- errors


def service_kind(exc: BaseException) -> str | None:
    """Which backing service `exc` is a failure of, or None when it is none of them."""
    if isinstance(exc, redis.RedisError):
        return "redis"
    if isinstance(exc, DatabaseError):
        return "database"
    if isinstance(exc, OSError):
        return "network"
    module = type(exc).__module__
    if module.startswith(("channels.", "channels_redis")):
        return "channel_layer"
    return None


def service_error(exc: BaseException) -> None:
    """Count `exc` when it is a failure of Redis, the channel layer, the database or the network."""
    kind = service_kind(exc)
    if kind is not None:
        SERVICE_ERRORS.labels(kind).inc()


def http_error(response: Any) -> None:
    """An HTTP API error response (a DRF `Response`), counted by the `code` of its body."""
    data = getattr(response, "data", None)
    code = data.get("code") if isinstance(data, dict) else None
    _HTTP_ERRORS.get(code, _HTTP_ERRORS_OTHER).inc()


# ---------------------------------------------------------------- exposition


if MULTIPROCESS:
    from prometheus_client import multiprocess

    # This process's live gauges leave the sum when it stops (a killed one's stay until the directory is wiped).
    atexit.register(multiprocess.mark_process_dead, os.getpid())
