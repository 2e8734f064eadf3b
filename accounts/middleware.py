"""Channels middleware: who is on the other end of a WebSocket handshake.

Credentials, first match wins (docs/protocol.md section 2):

1. header ``Authorization: Bearer <access>`` (servers, the Python client);
2. query string ``?token=<access>`` (browsers, which cannot set headers on a socket);
3. the Django session cookie of a logged-in user.

It sets ``scope["user"]`` (the user, or ``AnonymousUser``) and ``scope["auth"]``
(`ScopeAuth`). A bad or expired token does not reject the handshake: the
consumer accepts and then closes with 4501 or 4009, so the client learns why.
The middleware only records ``error``; a bad header or query token never falls
through to the cookie.

Cross-site WebSocket hijacking: browsers attach cookies to a socket opened by any
page, and the same-origin policy does not apply to WebSockets, so a foreign page
could ride a logged-in user's session. The session cookie therefore counts only
when the handshake carries an ``Origin`` whose host matches ``ALLOWED_HOSTS``
(Channels' own matching, with its DEBUG defaults). No ``Origin`` (not a browser)
or a foreign one: the cookie is ignored. A bare ``*`` in ``ALLOWED_HOSTS`` does
not count here, as it would let every site in; list the hosts to use cookies.
Tokens work with or without an ``Origin``: a page has to hold the token to send it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Literal, TypedDict
from urllib.parse import ParseResult, parse_qs, urlparse

from channels.auth import get_user
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import parse_cookie
from rest_framework_simplejwt import settings as jwt_settings  # the module: SIMPLE_JWT changes rebind api_settings

from .tokens import Authenticated, ExpiredCredentials, InvalidCredentials, authenticate_token

Method = Literal["header", "query", "cookie"]
Error = Literal["invalid", "expired"]


class ScopeAuth(TypedDict):
    """``scope["auth"]``: how the handshake authenticated, until when, or what was wrong."""

    method: Method | None
    expires_at: int | None
    error: Error | None


class JWTAuthMiddleware(BaseMiddleware):
    """Set ``scope["user"]`` and ``scope["auth"]`` from a token or an allowed session cookie.

    Needs ``scope["cookies"]`` and ``scope["session"]`` from `SocketSessionMiddleware`
    (or Channels' CookieMiddleware and SessionMiddleware) above it for the cookie;
    `JWTAuthMiddlewareStack` wires them.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Authenticate the handshake into a copy of the scope, then run the inner app."""
        if scope["type"] != "websocket":
            raise ValueError("JWTAuthMiddleware only handles WebSocket connections.")
        scope = dict(scope)
        scope["user"], scope["auth"] = await self.authenticate(scope)
        return await self.inner(scope, receive, send)

    async def authenticate(self, scope: dict[str, Any]) -> tuple[Any, ScopeAuth]:
        """The user and the ``scope["auth"]`` entry of this handshake."""
        finders: tuple[tuple[Method, Any], ...] = (("header", self.header_token), ("query", self.query_token))
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
            return result.user, _auth(method, result)
        if self.cookie_allowed(scope):
            user = await get_user(scope)
            if user.is_authenticated:
                return user, _auth("cookie", Authenticated(user=user, expires_at=None))
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
        if origin is None:
            return False
        try:
            parsed = urlparse(origin)
            return _allowed_origin(parsed)
        except ValueError:  # not a URL at all, say "http://[::1"
            return False


class SocketSessionMiddleware:
    """``scope["cookies"]`` and a lazy ``scope["session"]`` for a WebSocket handshake; `send` untouched.

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

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        store = import_module(settings.SESSION_ENGINE).SessionStore  # (imported once; then a dict lookup)
        session = store(cookies.get(settings.SESSION_COOKIE_NAME))
        return await self.inner(dict(scope, cookies=cookies, session=session), receive, send)


def JWTAuthMiddlewareStack(inner: Any) -> Any:
    """Cookies and the session (read-only), then `JWTAuthMiddleware`, around `inner` (as Channels'
    AuthMiddlewareStack, without a wrapper on every message sent)."""
    return SocketSessionMiddleware(JWTAuthMiddleware(inner))


def _auth(method: Method | None, result: Authenticated | None = None, error: Error | None = None) -> ScopeAuth:
    expires_at = result.expires_at if result is not None else None
    return ScopeAuth(method=method, expires_at=expires_at, error=error)


def _header_name() -> bytes:
    # simplejwt names the header WSGI-style ("HTTP_AUTHORIZATION"); ASGI has "authorization".
    name = jwt_settings.api_settings.AUTH_HEADER_NAME.removeprefix("HTTP_")
    return name.lower().replace("_", "-").encode("latin1")


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _allowed_origin(parsed: ParseResult) -> bool:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        # Django's own DEBUG default for an empty ALLOWED_HOSTS (as AllowedHostsOriginValidator does).
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    patterns = [host for host in allowed if host != "*"]
    return OriginValidator(None, patterns).valid_origin(parsed)
