"""The production server: `python -m project.serve --host 0.0.0.0 --port 8000` (README, "Deployment").

uvicorn with the options this project needs, in this one place: the README, docs/operations.md,
the end-to-end tests and the benchmark all run this module rather than a flag list of their own.
Arguments are uvicorn's (`--workers 4`, `--ssl-certfile …`); given after these, they win.

- Frames: a WebSocket message over FRAME_HEADROOM × `MAX_FRAME_BYTES` closes its socket (1009)
  as it arrives, before uvicorn holds it whole (its own default is 16 MiB, and with
  permessage-deflate 16 KB on the wire inflated to that). Up to that size the protocol answers
  `too_large`. permessage-deflate is off: measured in docs/performance.md.
- Request heads: at most HEAD_BYTES while incomplete (else 400), each within
  `uvicorn_protocols.REQUEST_HEAD_TIMEOUT` seconds (else closed); a WebSocket handshake that
  websockets refuses (a header line over 8 KiB) is answered 431 and closed.
- The client address is the application's to decide (`TRUSTED_PROXY_COUNT`), so uvicorn reads no
  `X-Forwarded-*` header itself (`--no-proxy-headers`).
- `--lifespan on` retires the process at shutdown; `--ws-ping-interval 0`: the protocol has its
  own heartbeat (docs/operations.md).

Nothing here imports Django at import time: the test harness and the benchmark import this module.
"""

from __future__ import annotations

import os
import sys

APPLICATION = "project.asgi:application"
FRAME_HEADROOM = 2
HEAD_BYTES = 16384


def ws_max_size() -> int:
    """The largest WebSocket message a server reads: FRAME_HEADROOM × REALTIME's `MAX_FRAME_BYTES`."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from realtime.support.conf import realtime_settings

    return FRAME_HEADROOM * realtime_settings.MAX_FRAME_BYTES


def uvicorn_options() -> list[str]:
    """uvicorn's command-line arguments for this project, the application first."""
    return [
        APPLICATION,
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


def command(*arguments: str, python: str = sys.executable) -> list[str]:
    """The command line that serves this project (`arguments` are uvicorn's)."""
    return [python, "-m", "project.serve", *arguments]


def main(arguments: list[str]) -> None:
    """Run uvicorn with this project's options, then `arguments`."""
    from uvicorn.main import main as uvicorn

    # uvicorn's own command line, which project.devkey reads for the addresses it binds.
    sys.argv = ["uvicorn", *uvicorn_options(), *arguments]
    uvicorn()


if __name__ == "__main__":
    main(sys.argv[1:])
