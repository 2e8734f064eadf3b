"""Database models of the real-time engine."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

# The name part of a channel (`room:<slug>`), as PROTOCOL.md section 4 fixes it.
channel_name_part = RegexValidator(
    r"^[A-Za-z0-9_.@=-]{1,128}$",
    "1-128 characters of A-Z, a-z, 0-9 and _ . @ = -",
)


class Room(models.Model):
    """A room: the channel `room:<slug>`, open to its members only."""

    slug = models.CharField(max_length=128, unique=True, validators=[channel_name_part])
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="rooms", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    @property
    def channel(self) -> str:
        """The channel name of this room."""
        return f"room:{self.slug}"
