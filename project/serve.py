"""The reference deployment's production server: `python -m project.serve --host 0.0.0.0 --port 8000`.

`python -m realtime.server` (realtime/server/serve.py: uvicorn with every option the app needs,
in one place) for this project's settings and application. The README, docs/operations.md,
the end-to-end tests and the benchmark all run this module rather than a flag list of their own.
Arguments are uvicorn's (`--workers 4`, `--ssl-certfile …`); given after these, they win.

Nothing here imports Django at import time: the test harness and the benchmark import this module.
"""

from __future__ import annotations

import os
import sys

from realtime.server import serve

APPLICATION = "project.asgi:application"


def _settings() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")


def uvicorn_options() -> list[str]:
    """uvicorn's command-line arguments for this project, the application first."""
    _settings()
    return serve.uvicorn_options(APPLICATION)


def daphne_options() -> list[str]:
    """The same bound on a WebSocket message for daphne and `manage.py runserver` (daphne's)."""
    _settings()
    return serve.daphne_options()


def command(*arguments: str, python: str = sys.executable) -> list[str]:
    """The command line that serves this project (`arguments` are uvicorn's)."""
    return [python, "-m", "project.serve", *arguments]


if __name__ == "__main__":
    _settings()
    serve.main(sys.argv[1:], APPLICATION)
