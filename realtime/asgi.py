"""`realtime_application`: the one call that serves the app's sockets beside a project's Django (INTEGRATION.md 3).

```python
application = realtime_application(get_asgi_application())   # sockets at /ws/
```

The result is an ASGI application for uvicorn, daphne and `runserver` alike: HTTP goes to the
project's Django application untouched; WebSockets at `path` get every check of the protocol
(Host, Origin, JWT at the handshake or in the first frame, the session cookie from an allowed
Origin, the admission gate) before the consumer; the lifespan (and, under daphne, the reactor's
shutdown) closes the sockets with "going away" and retires this process's session rows.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.routing import ProtocolTypeRouter
from channels.security.websocket import WebsocketDenier
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from realtime.auth.middleware import JWTAuthMiddlewareStack
from realtime.checks import TAG
from realtime.runtime.node import NodeMiddleware
from realtime.server import daphne, logfilters
from realtime.socket.admission import AdmissionGate
from realtime.socket.consumer import RealtimeConsumer

Application = Any  # an ASGI application: `async (scope, receive, send)`

logger = logging.getLogger(__name__)


def realtime_application(django_application: Application, *, path: str = "/ws/") -> Application:
    """The project's HTTP application with the app's WebSocket endpoint at `path` (and the lifespan).

    Call it once, in the project's asgi.py, after `get_asgi_application()` (Django must be set up
    before the consumer's modules import models). The app's system checks run first: an error
    (what `manage.py check` reports as realtime.E…) raises `ImproperlyConfigured`, so no server
    starts on it.
    """
    _refuse_on_check_errors()
    logfilters.install()  # whatever the server, its logs never carry a `?token=`
    daphne.install()  # under daphne: the reactor's shutdown closes sockets first (no-op elsewhere)
    return NodeMiddleware(ProtocolTypeRouter({"http": django_application, "websocket": websocket_application(path)}))


def _refuse_on_check_errors() -> None:
    """Raise `ImproperlyConfigured` listing the app's check errors (silenced ones aside, as `check` does);
    log its warnings, which a server started without `manage.py check` would otherwise never show."""
    found = [message for message in checks.run_checks(tags=[TAG]) if not message.is_silenced()]
    for warning in (message for message in found if not message.is_serious()):
        logger.warning("%s: %s HINT: %s", warning.id, warning.msg, warning.hint)
    errors = [message for message in found if message.is_serious()]
    if errors:
        listed = "\n".join(f"  {message.id}: {message.msg}\n    HINT: {message.hint}" for message in errors)
        raise ImproperlyConfigured(f"The realtime app is misconfigured (`manage.py check` says the same):\n{listed}")


def websocket_application(path: str = "/ws/") -> Application:
    """The WebSocket side alone: credentials (JWT, cookie), the route, the admission gate, the consumer."""
    if not path.startswith("/") or not path.endswith("/"):
        raise ValueError(f"path must start and end with '/', as in '/ws/' (got {path!r})")
    # (the gate sits behind the middleware: it needs to know whether the handshake had credentials)
    return JWTAuthMiddlewareStack(SocketPath(path, AdmissionGate(RealtimeConsumer.as_asgi())))


class SocketPath:
    """The sockets' one path (below the scope's `root_path`); a handshake for any other is refused (HTTP 403).

    Instead of Channels' URLRouter, which copies the scope into a dict that, like every frame of
    the middleware chain, lives as long as the socket: one socket path needs no routing table.
    """

    def __init__(self, path: str, inner: Application) -> None:
        self.path = path
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("path") != (scope.get("root_path") or "") + self.path:
            logger.info("refused a WebSocket handshake for %r: the sockets are at %r", scope.get("path"), self.path)
            return await WebsocketDenier()(scope, receive, send)
        return await self.inner(scope, receive, send)
