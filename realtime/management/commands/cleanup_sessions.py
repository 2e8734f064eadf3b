"""Close the session rows of dead server processes and purge old closed rows, once."""

from django.core.management.base import BaseCommand, CommandError

from realtime.runtime.node import cleanup
from realtime.support.conf import realtime_settings


class Command(BaseCommand):
    help = (
        "Close open session rows of server processes whose heartbeat stopped (1006 'stale') and "
        "delete closed rows older than SESSION_RETENTION. Run it with the servers' REALTIME settings: "
        "NODE_HEARTBEAT decides who counts as dead."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--retention",
            type=float,
            metavar="SECONDS",
            help="Purge closed rows older than this instead of SESSION_RETENTION.",
        )

    def handle(self, *args, retention: float | None = None, **options) -> None:
        if retention is not None and retention < 0:
            raise CommandError("--retention must be >= 0 seconds.")
        retention = realtime_settings.SESSION_RETENTION if retention is None else retention
        result = cleanup(retention=retention)
        self.stdout.write(
            f"stale closed: {result.closed} "
            f"({result.stale_closed} of {result.dead_nodes} dead node(s), {result.orphans_closed} of unregistered "
            f"nodes); purged: {result.purged} closed row(s) older than {retention:g} s"
        )
