"""The production server: uvicorn with the options the app needs, in one place.

    DJANGO_SETTINGS_MODULE=mysite.settings python -m realtime.server --host 0.0.0.0 --port 8000

serves the project's `ASGI_APPLICATION` (or the `module:attribute` given first). Further
arguments are uvicorn's (`--workers 4`, `--ssl-certfile …`); given after these, they win.

- Frames: a WebSocket message over FRAME_HEADROOM × `MAX_FRAME_BYTES` closes its socket (1009)
  as it arrives, before uvicorn holds it whole (its own default is 16 MiB, and with
  permessage-deflate 16 KB on the wire inflated to that). Up to that size the protocol answers
  `too_large`. permessage-deflate is off (docs/performance.md measured it).
- Request heads: at most HEAD_BYTES while incomplete (else 400), each within
  `realtime.server.uvicorn.REQUEST_HEAD_TIMEOUT` seconds (else closed); a WebSocket handshake
  that websockets refuses (a header line over 8 KiB) is answered 431 and closed.
- The client address is the application's to decide (DRF's `NUM_PROXIES`), so uvicorn reads no
  `X-Forwarded-*` header itself (`--no-proxy-headers`).
- `--lifespan on` retires the process at shutdown; `--ws-ping-interval 0`: the protocol has its
  own heartbeat.

Nothing here imports Django at import time: a test harness or a benchmark may import this module.
"""

from __future__ import annotations

import os
import sys

FRAME_HEADROOM = 2
HEAD_BYTES = 16384


def ws_max_size() -> int:
    """The largest WebSocket message a server reads: FRAME_HEADROOM × REALTIME's `MAX_FRAME_BYTES`."""
    from realtime.support.conf import realtime_settings

    return FRAME_HEADROOM * realtime_settings.MAX_FRAME_BYTES


def application_path() -> str:
    """The project's `ASGI_APPLICATION` as uvicorn names an application (`mysite.asgi:application`)."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise SystemExit("Set DJANGO_SETTINGS_MODULE (e.g. mysite.settings), or name the application: APP:ATTRIBUTE.")
    from django.conf import settings

    module, _, attribute = settings.ASGI_APPLICATION.rpartition(".")
    return f"{module}:{attribute}"


def uvicorn_options(application: str | None = None) -> list[str]:
    """uvicorn's command-line arguments for the app, the application first."""
    return [
        application or application_path(),
        "--http", "realtime.server.uvicorn:HTTPProtocol",  # h11, with a deadline for each request head
        "--h11-max-incomplete-event-size", str(HEAD_BYTES),
        "--ws", "realtime.server.uvicorn:WebSocketProtocol",  # websockets-sansio, answering refused handshakes
        "--ws-max-size", str(ws_max_size()),
        "--ws-per-message-deflate", "false",
        "--ws-ping-interval", "0",
        "--lifespan", "on",
        "--no-proxy-headers",
    ]  # fmt: skip


def daphne_options() -> list[str]:
    """The same bound on a WebSocket message for daphne and `manage.py runserver` (daphne's)."""
    size = str(ws_max_size())
    return ["--websocket-max-message-size", size, "--websocket-max-frame-size", size]


def main(arguments: list[str], application: str | None = None) -> None:
    """Run uvicorn with the app's options, then `arguments` (the first may name the application)."""
    from uvicorn.main import main as uvicorn

    if application is None and arguments and not arguments[0].startswith("-") and ":" in arguments[0]:
        application, *arguments = arguments
        # As the project's asgi.py does: `mysite.asgi:application` is served with `mysite.settings`.
        package = application.partition(":")[0].rpartition(".")[0]
        if package:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{package}.settings")
    # uvicorn's own command line (what a development-key guard reads for the addresses it binds).
    sys.argv = ["uvicorn", *uvicorn_options(application), *arguments]
    uvicorn()
