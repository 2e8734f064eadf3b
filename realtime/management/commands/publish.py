"""Publish to a channel from the command line, as the server (`user` null)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.exceptions import SERVICE_ERRORS, RealtimeError
from realtime.protocol import loads_json
from realtime.publish import check_data_size, publish_sync, unheard_warning


class Command(BaseCommand):
    help = (
        "Publish DATA (a JSON value; with --text, a plain string) to CHANNEL as the server, and print "
        "its position. Needs the servers' REDIS_URL: without it the engine and the channel layer are "
        "this process's own, so the publication reaches no socket and is gone when the command exits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel", metavar="CHANNEL", help="namespace:name, e.g. public:lobby")
        parser.add_argument(
            "data", metavar="DATA", help='a JSON value, e.g. \'{"text": "hi"}\' (with --text: any string)'
        )
        parser.add_argument("--text", action="store_true", help="send DATA as a JSON string, unparsed")

    def handle(self, *args: Any, channel: str, data: str, text: bool = False, **options: Any) -> None:
        if text:
            value: Any = data
        else:
            try:
                value = loads_json(data)
            except ValueError as exc:
                raise CommandError(f"DATA is not JSON ({exc}); use --text to send a plain string.") from exc
        warning = unheard_warning()
        if warning:
            self.stderr.write(warning)
        try:
            check_data_size(value)
            published = publish_sync(channel, value, user=None)
        except RealtimeError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        except SERVICE_ERRORS as exc:
            raise CommandError(f"unavailable: {exc!r}") from exc
        self.stdout.write(f"published to {channel} at {published.epoch}:{published.offset}")
