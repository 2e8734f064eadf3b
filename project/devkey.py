"""The development key serves loopback only.

Without `SECRET_KEY` the settings use this checkout's random development key
(`project.settings._development_key`). That is fine for `make run` on 127.0.0.1 and
wrong anywhere else: a key nobody chose, in a file next to the code, signs every JWT.
So a server started with it refuses to run when it binds to anything but a loopback
address (checked from its command line at start, for daphne, uvicorn and runserver),
and, whatever the server, a connection that arrives on a non-loopback address is
refused (HTTP 503, or the WebSocket handshake rejected) with an error in the log.
With `DEBUG` off the settings refuse the development key outright, and any key too weak to
sign with (`check_signing_key`, Django's own rule).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks.security import base as security_checks
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

REFUSAL = (
    "SECRET_KEY is not set, so this server would sign tokens with the development key of this "
    "checkout; that is only allowed on a loopback address. Set SECRET_KEY (and DEBUG=0) to serve on {host}."
)


def check_signing_key(name: str, key: str) -> None:
    """Refuse to start (ImproperlyConfigured) with a key too weak to sign sessions and tokens with.

    Django's rule, which its deploy check security.W009 only warns about: at least 50
    characters, at least 5 of them different, not startproject's `django-insecure-` one.
    """
    if not security_checks._check_secret_key(key):
        raise ImproperlyConfigured(
            f"{name} is too weak to sign with: it needs at least {security_checks.SECRET_KEY_MIN_LENGTH} "
            f"characters, at least {security_checks.SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different, and not "
            f"the prefix {security_checks.SECRET_KEY_INSECURE_PREFIX!r}. Make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; not 0.0.0.0 or :: (every interface)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _option(argv: Sequence[str], *names: str) -> list[str]:
    values = []
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                values.append(argv[index + 1])
            elif arg.startswith(name + "=") and name.startswith("--"):
                values.append(arg.split("=", 1)[1])
    return values


def bind_hosts(argv: Sequence[str]) -> list[str]:
    """The addresses a server started with `argv` listens on (the defaults of each are loopback)."""
    program = os.path.basename(os.path.dirname(argv[0]) if argv[0].endswith("__main__.py") else argv[0])
    if "runserver" in argv:  # manage.py runserver [addrport]
        rest = [arg for arg in argv[argv.index("runserver") + 1 :] if not arg.startswith("-")]
        if not rest:
            return ["127.0.0.1"]
        address = rest[0]
        match = re.fullmatch(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:]+)):\d+|\d+", address)
        if match is None:
            return [address]
        host = match.group("ipv6") or match.group("host") or "127.0.0.1"
        return ["0.0.0.0" if host == "0" else host]
    if program.startswith("daphne"):
        hosts = _option(argv, "-b", "--bind")
        for endpoint in _option(argv, "-e", "--endpoint"):
            interface = re.search(r"interface=([^:]+)", endpoint)
            hosts.append(interface.group(1) if interface else "0.0.0.0")
        return hosts or ["127.0.0.1"]
    if program.startswith("uvicorn"):
        return _option(argv, "--host") or ["127.0.0.1"]
    return []  # another server: the connection check below still applies


def check_serving(argv: Sequence[str]) -> None:
    """Refuse to start (ImproperlyConfigured) with the development key on a non-loopback bind; else say it is used.

    Called once by each serving process as it loads the ASGI application, so `make run`
    says it once (management commands do not say it at all).
    """
    if not getattr(settings, "DEVELOPMENT_KEY", False):
        return
    for host in bind_hosts(argv):
        if not is_loopback(host):
            raise ImproperlyConfigured(REFUSAL.format(host=host))
    where = getattr(settings, "DEVELOPMENT_KEY_FILE", None)
    # Logged, not warnings.warn(): that prints a line of this module's source code after the message.
    logger.warning("SECRET_KEY is not set: serving with this checkout's development key (%s); loopback only.", where)


class DevelopmentKeyGuard:
    """ASGI middleware: with the development key, serve connections on loopback addresses only."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.warned = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        server = scope.get("server")
        if getattr(settings, "DEVELOPMENT_KEY", False) and scope["type"] in ("http", "websocket") and server:
            host = str(server[0])
            if _is_address(host) and not is_loopback(host):
                if not self.warned:
                    self.warned = True
                    logger.error(REFUSAL.format(host=host))
                return await _refuse(scope, receive, send)
        return await self.app(scope, receive, send)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a test server's name (`testserver`): not a socket address
    return True


async def _refuse(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})  # before accept: an HTTP 403
        return
    body = b"SECRET_KEY is not set: this server answers on loopback addresses only.\n"
    await send(
        {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain; charset=utf-8")]}
    )
    await send({"type": "http.response.body", "body": body})
