"""A graceful Ctrl-C for `manage.py runserver` (daphne's, under Django's autoreloader).

With the autoreloader, runserver is two processes: a parent that restarts a child on every
code change, and the child, whose main thread watches files while daphne serves in another
thread with its signal handlers off. Ctrl-C reaches both; by default the child dies on the
spot (no `disconnect` 1001 for the sockets, their rows left open until a cleanup) and the
parent kills it 0.25 s later anyway. So, installed from `RealtimeConfig.ready()`:

- in the child, SIGINT and SIGTERM stop the Twisted reactor from its own thread, which runs
  the node's shutdown trigger (realtime.runtime.node: every socket is told 1001, its row closed),
  then the child exits as on a plain Ctrl-C;
- in the parent, SIGINT is ignored: it returns when the child has exited.

The child's handlers are installed whatever SIGINT disposition it inherited: started with
SIGINT ignored (in the background, under nohup; an ignored signal stays ignored across exec,
and the parent's own SIG_IGN is inherited too), Ctrl-C or `kill -INT` still stops it gracefully.

`runserver --noreload` needs none of this: daphne installs its own handlers then.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

STOP_TIMEOUT = 15.0  # the node's shutdown is bounded (SHUTDOWN_TIMEOUT); this bounds the wait for it


def under_autoreloader(argv: list[str]) -> bool:
    """Whether this process is `runserver` with the autoreloader (the parent or the child)."""
    return len(argv) > 1 and argv[1] == "runserver" and "--noreload" not in argv


def install(argv: list[str] | None = None) -> str | None:
    """Install the handlers for this process; returns which role it has ("child", "parent") or None."""
    argv = sys.argv if argv is None else argv
    if not under_autoreloader(argv) or threading.current_thread() is not threading.main_thread():
        return None
    if os.environ.get("RUN_MAIN") == "true":  # Django's autoreloader marks the child so
        signal.signal(signal.SIGINT, _stop_child)
        signal.signal(signal.SIGTERM, _stop_child)
        return "child"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return "parent"


def _stop_child(signum: int, frame: Any) -> None:
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None and reactor.running:
        reactor.callFromThread(reactor.stop)  # runs the "before shutdown" triggers: the node's goodbye
        deadline = time.monotonic() + STOP_TIMEOUT
        while reactor.running and time.monotonic() < deadline:
            time.sleep(0.05)
    raise KeyboardInterrupt  # what the autoreloader's child expects of a Ctrl-C: it exits quietly
