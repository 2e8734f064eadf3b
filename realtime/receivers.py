"""Signal receivers: revoked credentials end every socket of the user, a Django logout or a deleted
session the sockets its cookie authenticated, room changes the channels, on every process."""

from __future__ import annotations

import logging

from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, pre_delete
from django.dispatch import receiver

from accounts.signals import credentials_revoked

from .control import disconnect_django_session_sync, disconnect_user_sync, end_channel_for_user_sync
from .models import Room
from .protocol import CloseCode

logger = logging.getLogger(__name__)


@receiver(credentials_revoked, dispatch_uid="realtime.disconnect_revoked_user")
def disconnect_revoked_user(sender, user, reason: str, **kwargs) -> None:
    """Logout, deactivation, a password change or deletion: close the user's sockets with 4503."""
    try:
        disconnect_user_sync(user.pk, CloseCode.FORBIDDEN, "forbidden")
    except Exception:  # the revocation itself stands; the layer being down must not undo it
        logger.exception("could not reach the sockets of user %s (%s)", user.pk, reason)


@receiver(user_logged_out, dispatch_uid="realtime.end_cookie_sockets_at_logout")
def end_cookie_sockets_at_logout(sender, request, user, **kwargs) -> None:
    """Django's (or the admin's) logout: the sockets this browser session authenticated end (4503)."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        _end_django_session(session_key)


@receiver(post_delete, sender=Session, dispatch_uid="realtime.end_cookie_sockets_of_a_deleted_session")
def end_cookie_sockets_of_a_deleted_session(sender, instance: Session, **kwargs) -> None:
    """A session deleted (a logout's flush, the admin, `clearsessions` on an expired one): its sockets end."""
    key = instance.session_key
    transaction.on_commit(lambda: _end_django_session(key))


def _end_django_session(session_key: str) -> None:
    try:
        disconnect_django_session_sync(session_key)
    except Exception:  # the logout stands; the layer being down must not undo it
        logger.exception("could not reach the sockets of a Django session")


@receiver(m2m_changed, sender=Room.members.through, dispatch_uid="realtime.room_members_changed")
def room_members_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """Members removed from a room lose its channel at once, on every process."""
    if action not in ("pre_remove", "pre_clear"):
        return
    if reverse:  # user.rooms.remove(room): instance is the user, pk_set the rooms
        pairs = [(instance.pk, room.channel) for room in Room.objects.filter(pk__in=pk_set or [])]
    else:
        members = instance.members.all() if action == "pre_clear" else instance.members.filter(pk__in=pk_set or [])
        pairs = [(user_pk, instance.channel) for user_pk in members.values_list("pk", flat=True)]
    transaction.on_commit(lambda: _end_channels(pairs))


@receiver(pre_delete, sender=Room, dispatch_uid="realtime.room_deleted")
def room_deleted(sender, instance: Room, **kwargs) -> None:
    """A deleted room ends its channel for every member."""
    pairs = [(user_pk, instance.channel) for user_pk in instance.members.values_list("pk", flat=True)]
    transaction.on_commit(lambda: _end_channels(pairs))


def _end_channels(pairs: list[tuple[int, str]]) -> None:
    for user_pk, channel in pairs:
        try:
            end_channel_for_user_sync(user_pk, channel, "removed")
        except Exception:  # the membership change stands; the layer being down must not undo it
            logger.exception("could not end %s for user %s", channel, user_pk)
