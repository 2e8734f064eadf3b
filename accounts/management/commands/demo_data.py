"""Create demo users and a room with known passwords. Safe to run again."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from realtime.models import Room

DEMO_PASSWORD = "demo-pass-123"
STAFF = ("admin", "admin-pass-123")
USERS = ("alice", "bob", "carol")
ROOM = ("kitchen", "Kitchen", ("alice", "bob"))


class Command(BaseCommand):
    help = "Create demo users (alice, bob, carol), a staff user (admin) and a room (kitchen)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        User = get_user_model()
        for username in USERS:
            self._user(User, username, DEMO_PASSWORD, staff=False)
        self._user(User, STAFF[0], STAFF[1], staff=True)
        slug, name, members = ROOM
        room, _ = Room.objects.get_or_create(slug=slug, defaults={"name": name})
        room.members.add(*User.objects.filter(username__in=members))
        self.stdout.write(
            f"Demo data ready: users {', '.join(USERS)} (password {DEMO_PASSWORD!r}), "
            f"staff {STAFF[0]!r} (password {STAFF[1]!r}), room {room.channel!r} "
            f"with {', '.join(members)}."
        )

    def _user(self, User, username: str, password: str, *, staff: bool):
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        changed = created or not user.check_password(password) or user.is_staff != staff or not user.is_active
        if changed:
            user.set_password(password)
            user.is_staff = user.is_superuser = staff
            user.is_active = True
            user.save()
        return user
