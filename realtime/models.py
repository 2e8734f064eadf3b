"""Database models of the real-time engine."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

# The name part of a channel (`room:<slug>`), as PROTOCOL.md section 4 fixes it (`\Z`: `$` would
# also match before a final newline).
channel_name_part = RegexValidator(
    r"^[A-Za-z0-9_.@=-]{1,128}\Z",
    "1-128 characters of A-Z, a-z, 0-9 and _ . @ = -",
)


class Room(models.Model):
    """A room: the channel `room:<slug>`, open to its members only."""

    slug = models.CharField(max_length=128, unique=True, validators=[channel_name_part])
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="rooms", blank=True, through="Membership")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    @property
    def channel(self) -> str:
        """The channel name of this room."""
        return f"room:{self.slug}"


class Membership(models.Model):
    """A user's membership of a room: the table Django made for `Room.members`, declared.

    Declared so that deleting memberships sends `pre_delete` for each row, however it is
    done (`remove()`, `clear()`, a queryset delete on `Room.members.through`, a deleted
    room): Django sends no delete signals for an auto-created through model, and
    `realtime.receivers` ends the room's channel for the user on that signal.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")

    class Meta:
        db_table = "realtime_room_members"
        unique_together = [("room", "user")]

    def __str__(self) -> str:
        return f"user {self.user_id} in room {self.room_id}"


class Node(models.Model):
    """A live server process; it refreshes `last_seen` every NODE_HEARTBEAT seconds.

    A node whose beat stops (the process was killed) is found by the cleanup, which
    closes its open `Connection` rows with the reason `stale`.
    """

    name = models.CharField(max_length=200, unique=True, help_text="host:pid")
    hostname = models.CharField(max_length=150)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Connection(models.Model):
    """One socket session: who, where from, on which process, and how it ended.

    Written at authentication (never before valid credentials), refresh and close; never once per message.
    """

    class AuthMethod(models.TextChoices):
        NONE = "", "not authenticated"
        HEADER = "header", "Authorization header"
        PROTOCOL = "protocol", "Sec-WebSocket-Protocol header"
        QUERY = "query", "query string"
        COOKIE = "cookie", "session cookie"
        FRAME = "frame", "auth frame"

    # One row per socket; a resumed session (PROTOCOL section 3) keeps its id on a new row.
    session_id = models.CharField(max_length=64, db_index=True)
    resumed = models.BooleanField(default=False, help_text="this socket resumed an earlier session")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="realtime_connections"
    )
    node = models.CharField(max_length=200, db_index=True, help_text="server process (host:pid)")
    channel_name = models.CharField(max_length=200, help_text="channel layer address of the live consumer")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    auth_method = models.CharField(max_length=8, choices=AuthMethod.choices, blank=True)
    opened_at = models.DateTimeField(db_index=True)
    authenticated_at = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    close_code = models.PositiveIntegerField(null=True, blank=True)
    close_reason = models.CharField(max_length=64, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = [models.F("closed_at").asc(nulls_first=True), "-opened_at"]
        indexes = [
            models.Index(fields=["user", "closed_at"], name="rt_conn_user_open"),
            models.Index(fields=["node", "closed_at"], name="rt_conn_node_open"),
        ]
        # Not about connections: Connection is merely the app's model that carries
        # the app-wide permission `realtime.publish` (POST /api/realtime/publish/).
        permissions = [("publish", "Can publish to any channel over the HTTP API")]

    def __str__(self) -> str:
        return self.session_id

    @property
    def is_open(self) -> bool:
        """True while the socket has not been closed (or found stale)."""
        return self.closed_at is None
