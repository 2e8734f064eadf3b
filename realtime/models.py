"""Database models of the real-time engine."""

from __future__ import annotations

import calendar
from datetime import datetime

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


class CredentialState(models.Model):
    """When the user's credentials were last revoked (one row per user, made on first revocation).

    Written by `realtime.auth.revocation`, read by the token checks (`realtime.auth.tokens`).
    `revoked_at` ends the access tokens issued before it (every revocation, a logout too);
    `refresh_revoked_at` the refresh tokens (a password change, a deactivation, a logout with
    `all`: what must end every session, not one device's).

    Until 7392aaa this was the reference deployment's `accounts.CredentialState`: migration 0008
    adopts its table and content type. The reverse accessor is prefixed with the app's name, so
    that it cannot clash with a field or relation of the project's own user model.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="realtime_credentials"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    refresh_revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"credentials of user {self.user_id} revoked at {self.revoked_at}"

    def revokes(self, issued_at: int | None, issued_at_us: int | None = None) -> bool:
        """Whether an access token with this `iat` (Unix seconds) and `iat_us` (microseconds) is revoked."""
        return issued_before(self.revoked_at, issued_at, issued_at_us)

    def revokes_refresh(self, issued_at: int | None, issued_at_us: int | None = None) -> bool:
        """Whether a refresh token with this `iat` and `iat_us` is revoked."""
        return issued_before(self.refresh_revoked_at, issued_at, issued_at_us)


def issued_before(revoked_at: datetime | None, issued_at: int | None, issued_at_us: int | None = None) -> bool:
    """Whether a token with this `iat` (Unix seconds) and `iat_us` (microseconds, if any) predates `revoked_at`."""
    # `iat` has whole seconds: with a revocation at 12.5 s, a token issued at 12.3 s
    # and one issued at 12.9 s both carry iat=12. So a token from an earlier second
    # is revoked, one from a later second is not, and in the revocation's own second
    # only a token stamped to the microsecond (`iat_us`, which the token endpoints
    # add: realtime.auth.tokens.PreciseAccessToken and PreciseRefreshToken) can show it came after; one without
    # the stamp is revoked. Thus a user who logs out and straight back in gets a
    # working token, and no token issued before a revocation survives it. Token
    # issuers and this check must share a clock (NTP) for that to hold.
    if revoked_at is None:
        return False
    if issued_at is None:
        return True  # no `iat`: nothing shows it came after the revocation
    revoked_us = unix_microseconds(revoked_at)
    revoked_second = revoked_us // 1_000_000
    if issued_at != revoked_second:
        return issued_at < revoked_second
    return issued_at_us is None or issued_at_us <= revoked_us


def unix_microseconds(moment: datetime) -> int:
    """An aware datetime as whole microseconds since the Unix epoch (exact, unlike a float timestamp)."""
    return calendar.timegm(moment.utctimetuple()) * 1_000_000 + moment.microsecond
