#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

# While `make run` serves (scripts/run.py), it writes the Redis it serves with here: commands of
# this checkout (`publish`, `shell`) then reach its sockets without REDIS_URL being set.
RUN_REDIS_FILE = Path(__file__).resolve().parent / ".run" / "redis-url"


def main() -> None:
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    if "REDIS_URL" not in os.environ and RUN_REDIS_FILE.is_file():
        os.environ["REDIS_URL"] = RUN_REDIS_FILE.read_text().strip()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
