#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

# `make run` (scripts/run.py) records here the Redis it serves with, and keeps it after it stops:
# commands of this checkout (`publish`, `shell`) then use that Redis without REDIS_URL being set.
RUN_REDIS_FILE = Path(__file__).resolve().parent / ".run" / "redis-url"


def run_redis_url() -> str:
    """The Redis `make run` serves with in this checkout, when it answers; else ""."""
    if not RUN_REDIS_FILE.is_file():
        return ""
    from scripts.local_redis import redis_answers

    url = RUN_REDIS_FILE.read_text().strip()
    # A private redis-server stopped since (`make stop-redis`, a reboot): serve nothing stale.
    return url if redis_answers(url) else ""


def main() -> None:
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    if "REDIS_URL" not in os.environ:  # set, even empty, it is the caller's choice
        url = run_redis_url()
        if url:
            os.environ["REDIS_URL"] = url
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
