"""Access tokens: the provider interface, reading a JWT's `exp`, and `PasswordLogin`.

A token is a string or an async callable returning one. The client calls a provider
only when it needs a token: the first connect, after a 4009 or 4501 close, on
`expiring`, and before a reconnect when the current token is (nearly) expired.
A provider that raises `RealtimeError` with code `unauthorized` or `forbidden`
stops the client; any other exception is a failed attempt, retried with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from .errors import RealtimeError
from .redirects import origin, refused

TokenProvider = Callable[[], Awaitable[str]]
Token = str | TokenProvider


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying it; None when there is none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
    except (IndexError, ValueError, AttributeError, TypeError):
        return None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class PasswordLogin:
    """A token provider that logs in with a password, then uses (and rotates) the refresh token.

    The first call posts `{username, password}` to `/api/auth/token/`; later calls post
    the refresh token to `/api/auth/token/refresh/`, keeping the rotated one. A refused
    refresh (401) falls back to a new login. A redirect is followed within `base_url`'s
    origin only (`RealtimeError("redirect")` otherwise). Close it with `aclose()` (or `async with`).
    """

    LOGIN_PATH = "/api/auth/token/"
    REFRESH_PATH = "/api/auth/token/refresh/"

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._refresh: str | None = None
        self._lock = asyncio.Lock()
        self._origin = origin(self.base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            follow_redirects=True,
            event_hooks={"request": [self._same_origin]},  # runs before each request, redirected ones too
        )

    async def _same_origin(self, request: httpx.Request) -> None:
        if origin(str(request.url)) != self._origin:
            raise refused(self.base_url, str(request.url))

    async def __call__(self) -> str:
        """Return a fresh access token (refreshing when it can, else logging in)."""
        async with self._lock:
            if self._refresh is not None:
                try:
                    return await self._obtain(self.REFRESH_PATH, {"refresh": self._refresh})
                except RealtimeError as exc:
                    if exc.code != "unauthorized":
                        raise
                    self._refresh = None  # refused (blacklisted or expired): log in again
            return await self._obtain(self.LOGIN_PATH, {"username": self.username, "password": self._password})

    async def _obtain(self, path: str, body: dict[str, str]) -> str:
        try:
            response = await self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise RealtimeError("unavailable", f"POST {path}: {exc!r}") from exc
        data = _json(response)
        if response.status_code != 200:
            raise _http_error(path, response.status_code, data)
        access, refresh = data.get("access"), data.get("refresh")
        if not isinstance(access, str) or not access:
            raise RealtimeError("internal", f"POST {path}: no access token in the reply")
        if isinstance(refresh, str) and refresh:
            self._refresh = refresh
        return access

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def __aenter__(self) -> PasswordLogin:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# HTTP status -> code, for error bodies without one.
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 429: "rate_limited", 503: "unavailable"}


def _http_error(path: str, status: int, body: dict[str, Any]) -> RealtimeError:
    # 401 is always `unauthorized`, whatever the body says: it is what callers branch on.
    code = "unauthorized" if status == 401 else body.get("code") or STATUS_CODES.get(status) or f"http_{status}"
    message = body.get("message") or body.get("detail") or ""
    return RealtimeError(str(code), f"POST {path}: HTTP {status} {message}".rstrip())
