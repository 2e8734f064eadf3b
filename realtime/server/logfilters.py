"""What the servers' own logs may say: no credentials from a URL, no line that says nothing.

A socket may carry its access token in the query string (`/ws/?token=…`), and every server
logs request paths with it: uvicorn's access log and its WebSocket "[accepted]" line, runserver's
request lines, daphne's access log (written to a stream, not through `logging`). `install()`
(called by project/asgi.py in every serving process) redacts the value of every query parameter
whose name contains `token` in all of them, and drops the lines of SILENT, such as websockets'
"connection open" and "connection closed", which name no socket (realtime.sockets logs each
socket's open, authentication and close).
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
SECRET_PARAMETER = re.compile(r"([?&][^=&#\s\"]*token[^=&#\s\"]*=)[^&#\s\"]*", re.IGNORECASE)
# The loggers that print request paths or websockets' lines (uvicorn; runserver's, daphne's).
LOGGERS = ("uvicorn.access", "uvicorn.error", "django.channels.server", "daphne.server")
# Lines that name no socket (websockets'; realtime.sockets logs each socket), or ask a user to act
# on nothing (daphne's: this project serves HTTP/1.1 behind a proxy).
SILENT = frozenset(
    {
        "connection open",
        "connection closed",
        "HTTP/2 support not enabled (install the http2 and tls Twisted extras)",
    }
)


def redact(text: str) -> str:
    """`text` with the value of each `…token…=` query parameter replaced by `[redacted]`."""
    return SECRET_PARAMETER.sub(r"\1" + REDACTED, text) if "token" in text.lower() else text


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Redact tokens in a record's message and arguments (formats such as uvicorn's keep their shape)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in SILENT:
            return False
        record.msg = _clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(value) for key, value in record.args.items()}
        return True


def install() -> None:
    """Add the filter to the servers' loggers, and redact daphne's access log; idempotent."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactingFilter) for existing in logger.filters):
            logger.addFilter(RedactingFilter())
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # pragma: no cover - daphne is in requirements.txt
        return
    if not getattr(AccessLogGenerator.write_entry, "redacting", False):
        original = AccessLogGenerator.write_entry

        def write_entry(self: Any, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
            original(self, host, date, redact(request), *args, **kwargs)

        write_entry.redacting = True  # type: ignore[attr-defined]
        AccessLogGenerator.write_entry = write_entry
