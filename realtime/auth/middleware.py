"""Channels middleware: who is on the other end of a WebSocket handshake.

Credentials, first match wins (docs/protocol.md section 2):

1. header ``Authorization: Bearer <access>`` (servers, the Python client);
2. a subprotocol ``realtime.bearer.<access>`` offered in ``Sec-WebSocket-Protocol`` (the
   browser client: ``new WebSocket(url, ["realtime.v1", "realtime.bearer.<access>"])``;
   the consumer accepts with ``realtime.v1`` and never echoes the token);
3. query string ``?token=<access>`` (browsers; ends up in access logs);
4. the Django session cookie of a logged-in user.

It sets ``scope["user"]`` (the user, or ``AnonymousUser``) and ``scope["auth"]``
(`ScopeAuth`). A bad or expired token does not reject the handshake: the
consumer accepts and then closes with 4501 or 4009, so the client learns why.
The middleware only records ``error``; a bad header or query token never falls
through to the cookie.

The handshake's ``Host`` must be one of ``ALLOWED_HOSTS`` (as Django requires of an
HTTP request; with its DEBUG defaults), or the handshake is refused (HTTP 403).

Cross-site WebSocket hijacking: browsers attach cookies to a socket opened by any
page, and the same-origin policy does not apply to WebSockets, so a foreign page
could ride a logged-in user's session. The session cookie therefore counts only
when the handshake's ``Origin`` is exactly (scheme, host and port) the server's own
origin (the handshake's scheme and ``Host``) or one of ``CSRF_TRUSTED_ORIGINS``. No
``Origin`` (not a browser) or another one: the cookie is ignored. Tokens work with
or without an ``Origin``: a page has to hold the token to send it.
"""

from __future__ import annotations

import time
from importlib import import_module
from typing import Any, Literal, TypedDict
from urllib.parse import parse_qs, urlparse

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user as get_django_user
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.http import parse_cookie
from django.http.request import split_domain_port, validate_host
from rest_framework_simplejwt import settings as jwt_settings  # the module: SIMPLE_JWT changes rebind api_settings

from realtime.auth.cache import authenticate_token
from realtime.auth.tokens import Authenticated, ExpiredCredentials, InvalidCredentials

Method = Literal["header", "protocol", "query", "cookie"]

# The subprotocol a client offers and the server chooses, and the prefix of one carrying an access
# token (a JWT's characters are all RFC 7230 token characters, as a subprotocol's must be).
SUBPROTOCOL = "realtime.v1"
BEARER_PROTOCOL = "realtime.bearer."
Error = Literal["invalid", "expired", "unavailable"]


class ScopeAuth(TypedDict):
    """``scope["auth"]``: how the handshake authenticated, until when, or what was wrong."""

    method: Method | None
    expires_at: int | None
    error: Error | None
    checked_us: int  # when the check began (Unix microseconds; 0 without credentials)


class JWTAuthMiddleware(BaseMiddleware):
    """Set ``scope["user"]`` and ``scope["auth"]`` from a token or an allowed session cookie.

    Needs ``scope["cookies"]`` and ``scope["session"]`` from `SocketSessionMiddleware`
    (or Channels' CookieMiddleware and SessionMiddleware) above it for the cookie;
    `JWTAuthMiddlewareStack` wires them.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Refuse a handshake for a host not in ALLOWED_HOSTS; authenticate into the scope.

        Into the scope itself, not a copy (as BaseMiddleware would): `SocketSessionMiddleware` above
        it made the copy, and each copy stays alive as long as its socket (a frame holds it)."""
        if scope["type"] != "websocket":
            raise ValueError("JWTAuthMiddleware only handles WebSocket connections.")
        if request_host(scope) is None:
            # As Django refuses an HTTP request for another host (DNS rebinding, cache poisoning):
            # closed before accept, which the server answers with HTTP 403.
            return await WebsocketDenier()(scope, receive, send)
        scope["user"], scope["auth"] = await self.authenticate(scope)
        return await self.inner(scope, receive, send)

    async def authenticate(self, scope: dict[str, Any]) -> tuple[Any, ScopeAuth]:
        """The user and the ``scope["auth"]`` entry of this handshake."""
        finders: tuple[tuple[Method, Any], ...] = (
            ("header", self.header_token),
            ("protocol", self.protocol_token),
            ("query", self.query_token),
        )
        for method, find in finders:
            raw = find(scope)
            if raw is None:
                continue
            try:
                result = await authenticate_token(raw)
            except ExpiredCredentials:
                return AnonymousUser(), _auth(method, error="expired")
            except InvalidCredentials:
                return AnonymousUser(), _auth(method, error="invalid")
            except DatabaseError:  # the token may be fine: the consumer says `unavailable`, not 4501
                return AnonymousUser(), _auth(method, error="unavailable")
            return result.user, _auth(method, result)
        if scope.get("session") is not None and self.cookie_allowed(scope):
            checked_us = time.time_ns() // 1000
            try:
                user, expires_at = await session_user(scope["session"])
            except DatabaseError:
                return AnonymousUser(), _auth("cookie", error="unavailable")
            if user.is_authenticated:
                # The socket lives as long as the session: until it expires, or its logout or deletion.
                scope["django_session"] = DjangoSession(key=scope["session"].session_key, expires_at=expires_at)
                return user, _auth("cookie", Authenticated(user=user, expires_at=None, checked_us=checked_us))
        return AnonymousUser(), _auth(None)

    def header_token(self, scope: dict[str, Any]) -> str | None:
        """The token of an ``Authorization: Bearer`` header ("" when malformed), or None."""
        value = _header(scope, _header_name())
        if value is None:
            return None
        scheme, _, rest = value.strip().partition(" ")
        types = jwt_settings.api_settings.AUTH_HEADER_TYPES
        types = (types,) if isinstance(types, str) else types
        if scheme.lower() not in {t.lower() for t in types}:
            return None  # another scheme (say, Basic) is not ours to judge
        token = rest.strip()
        # A bearer header with no token, or with more than one part, is a bad token, not an absent one.
        return token if token and " " not in token else ""

    def protocol_token(self, scope: dict[str, Any]) -> str | None:
        """The token of a ``realtime.bearer.<access>`` subprotocol ("" when empty), or None."""
        for offered in scope.get("subprotocols") or ():
            if offered.startswith(BEARER_PROTOCOL):
                return offered.removeprefix(BEARER_PROTOCOL)
        return None

    def query_token(self, scope: dict[str, Any]) -> str | None:
        """The ``token`` query parameter, or None (also when empty)."""
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        values = query.get("token")
        return values[0] if values else None

    def cookie_allowed(self, scope: dict[str, Any]) -> bool:
        """Whether the session cookie may authenticate: there is one, from an allowed Origin,
        and the client did not say `?auth=frame` (it authenticates with a token in its first frame)."""
        if settings.SESSION_COOKIE_NAME not in scope.get("cookies", {}):
            return False
        if parse_qs(scope.get("query_string", b"").decode("latin1")).get("auth") == ["frame"]:
            return False
        origin = _header(scope, b"origin")
        return origin is not None and allowed_origin(scope, origin)


class DjangoSession(TypedDict):
    """``scope["django_session"]`` of a socket the session cookie authenticated."""

    key: str
    expires_at: float | None  # Unix seconds: the session's own expiry


class _SessionRequest:
    """What `django.contrib.auth.get_user` reads of a request: its session."""

    def __init__(self, session: Any) -> None:
        self.session = session


@database_sync_to_async
def session_user(session: Any) -> tuple[Any, float | None]:
    """The user of a Django session (as `django.contrib.auth.get_user`: the session hash is checked,
    so a password change logs it out) and the session's expiry, in one trip to the database thread."""
    user = get_django_user(_SessionRequest(session))
    if not user.is_authenticated:
        return user, None
    expires = None
    model = getattr(session, "model", None)  # database-backed stores: the stored expiry is the truth
    if model is not None and session.session_key:
        expires = model.objects.filter(session_key=session.session_key).values_list("expire_date", flat=True).first()
    if expires is None:
        expires = session.get_expiry_date()
    return user, expires.timestamp()


class SocketSessionMiddleware:
    """``scope["cookies"]`` and a lazy ``scope["session"]`` (None without a session cookie) for a WebSocket
    handshake; `send` untouched.

    Channels' ``CookieMiddleware`` + ``SessionMiddleware`` wrap every outgoing message to
    save a modified session (they read the session's state on each one): 5-8 % of the
    server's own CPU time in the delivery profile, and without it scenario 3 of the
    benchmark delivered about 40 % more per second (docs/performance.md). A socket here never
    modifies its Django session (and a WebSocket cannot set a cookie after its handshake),
    so the session is only read: the store is made, and loads from its backend only when
    the cookie is used.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        # Without django.contrib.sessions there is no session to read: cookie auth is off (realtime.W002).
        self.sessions = apps.is_installed("django.contrib.sessions")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        session = None
        key = cookies.get(settings.SESSION_COOKIE_NAME) if self.sessions else None
        if key:  # no session cookie, no session to read: a socket on a token keeps no store
            store = import_module(settings.SESSION_ENGINE).SessionStore  # (imported once; then a dict lookup)
            session = store(key)
        return await self.inner(dict(scope, cookies=cookies, session=session), receive, send)


def JWTAuthMiddlewareStack(inner: Any) -> Any:
    """Cookies and the session (read-only), then `JWTAuthMiddleware`, around `inner` (as Channels'
    AuthMiddlewareStack, without a wrapper on every message sent)."""
    return SocketSessionMiddleware(JWTAuthMiddleware(inner))


def _auth(method: Method | None, result: Authenticated | None = None, error: Error | None = None) -> ScopeAuth:
    if result is None:
        return ScopeAuth(method=method, expires_at=None, error=error, checked_us=0)
    return ScopeAuth(method=method, expires_at=result.expires_at, error=error, checked_us=result.checked_us)


def _header_name() -> bytes:
    # simplejwt names the header WSGI-style ("HTTP_AUTHORIZATION"); ASGI has "authorization".
    name = jwt_settings.api_settings.AUTH_HEADER_NAME.removeprefix("HTTP_")
    return name.lower().replace("_", "-").encode("latin1")


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _allowed_hosts() -> list[str]:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        # Django's own DEBUG default for an empty ALLOWED_HOSTS (HttpRequest.get_host does the same).
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return allowed


def request_host(scope: dict[str, Any]) -> str | None:
    """The handshake's `Host` (lower case, with its port) when ALLOWED_HOSTS allows it, else None."""
    host = (_header(scope, b"host") or "").strip().lower()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    return host


def _scheme(scope: dict[str, Any]) -> str:
    """The scheme the browser used: wss is https; behind a TLS proxy, as SECURE_PROXY_SSL_HEADER says."""
    if scope.get("scheme") == "wss":
        return "https"
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name, value = proxy
        header = name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")
        if (_header(scope, header) or "").split(",")[0].strip() == value:
            return "https"
    return "http"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host.lower().strip("[]"), port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


def allowed_origin(scope: dict[str, Any], origin: str) -> bool:
    """Whether `Origin` is exactly (scheme, host, port) this server's own, or one of CSRF_TRUSTED_ORIGINS.

    The server's own origin is the handshake's scheme and `Host`. Like Django's CSRF check,
    a trusted origin may name subdomains as `https://*.example.com`.
    """
    try:
        parsed = urlparse(origin.strip())
        key = _origin_key(parsed.scheme.lower(), parsed.hostname or "", parsed.port)
        own = urlparse(f"{_scheme(scope)}://{request_host(scope) or ''}")
        if parsed.hostname and key == _origin_key(own.scheme, own.hostname or "", own.port):
            return True
        for trusted in settings.CSRF_TRUSTED_ORIGINS:
            pattern = urlparse(trusted)
            host = pattern.hostname or ""
            if pattern.scheme.lower() != key[0] or (pattern.port or _DEFAULT_PORTS.get(key[0])) != key[2]:
                continue
            if host.startswith("*.") and key[1].endswith(host[1:]) or key[1] == host:
                return True
    except ValueError:  # not a URL at all (say "http://[::1"), or a port out of range
        return False
    return False
