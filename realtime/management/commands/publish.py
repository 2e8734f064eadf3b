"""Publish to a channel from the command line, as the server (`user` null)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.core.errors import RealtimeError
from realtime.core.protocol import loads_json
from realtime.namespaces import resolve
from realtime.pubsub.publishing import check_data_size, publish_sync
from realtime.support.conf import realtime_settings
from realtime.support.services import SERVICE_ERRORS

NO_REDIS = (
    "No Redis, so nothing was published: a publication from this process would reach no server. Set "
    "REDIS_URL to the servers' Redis, or serve with `make run` in this checkout: it records the Redis it "
    "finds in .run/redis-url (with no Redis installed it serves from memory, which no other process reaches)."
)


class Command(BaseCommand):
    help = (
        "Publish DATA (a JSON value; with --text, a plain string) to CHANNEL as the server, and print "
        "its position. Needs the servers' Redis: REDIS_URL, else the one `make run` serves with in this "
        "checkout (.run/redis-url); without one it fails, publishing nothing."
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
        try:
            resolve(channel)
            check_data_size(value)
            if not realtime_settings.REDIS_URL:
                # The engine would be this process's memory: no server could hear it, and it is gone at exit.
                raise CommandError(NO_REDIS)
            published = publish_sync(channel, value, user=None)
        except RealtimeError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        except SERVICE_ERRORS as exc:
            raise CommandError(f"unavailable: {exc!r}") from exc
        self.stdout.write(f"published to {channel} at {published.epoch}:{published.offset}")
