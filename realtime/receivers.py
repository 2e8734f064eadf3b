"""Signal receivers: revoked credentials end every socket of the user, a Django logout or a deleted
session the sockets its cookie authenticated, an ended room membership the room's channel, on every process."""

from __future__ import annotations

import logging

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver

from realtime.core.protocol import CloseCode
from realtime.models import Membership, Room
from realtime.sessions.control import (
    disconnect_django_session_sync,
    disconnect_user_sync,
    end_channel_for_user_sync,
)
from realtime.signals import credentials_revoked

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


def end_cookie_sockets_of_a_deleted_session(sender, instance, **kwargs) -> None:
    """A session deleted (a logout's flush, the admin, `clearsessions` on an expired one): its sockets end."""
    key = instance.session_key
    transaction.on_commit(lambda: _end_django_session(key))


if apps.is_installed("django.contrib.sessions"):  # without it no socket has a cookie session (realtime.W002)
    from django.contrib.sessions.models import Session

    post_delete.connect(
        end_cookie_sockets_of_a_deleted_session,
        sender=Session,
        dispatch_uid="realtime.end_cookie_sockets_of_a_deleted_session",
    )


def _end_django_session(session_key: str) -> None:
    try:
        disconnect_django_session_sync(session_key)
    except Exception:  # the logout stands; the layer being down must not undo it
        logger.exception("could not reach the sockets of a Django session")


@receiver(pre_delete, sender=Membership, dispatch_uid="realtime.membership_deleted")
def membership_deleted(sender, instance: Membership, origin, using: str, **kwargs) -> None:
    """A member left a room, however it was done: they lose its channel at once, on every process.

    One receiver for every way a membership row goes (`remove()`, `clear()`, `set()`, a queryset
    delete on `Room.members.through`, a deleted room), so each is ended once. Not seen:
    `QuerySet.update()` and raw SQL (docs/operations.md, "Bulk changes").
    """
    if _deletes_users(origin):
        return  # the deletion revokes the user's credentials: every socket of theirs ends (4503)
    pairs = [(instance.user_id, _room_channel(instance.room_id, origin))]
    transaction.on_commit(lambda: _end_channels(pairs), using=using)


def _deletes_users(origin) -> bool:
    user_model = get_user_model()
    return isinstance(origin, user_model) or (isinstance(origin, QuerySet) and issubclass(origin.model, user_model))


def _room_channel(room_pk: int, origin) -> str:
    # Read now: once the transaction commits, a deleted room is gone. A room deleted
    # with its memberships is the origin itself: no query.
    if isinstance(origin, Room) and origin.pk == room_pk:
        return origin.channel
    return Room.objects.only("slug").get(pk=room_pk).channel


def _end_channels(pairs: list[tuple[int, str]]) -> None:
    for user_pk, channel in pairs:
        try:
            end_channel_for_user_sync(user_pk, channel, "removed")
        except Exception:  # the membership change stands; the layer being down must not undo it
            logger.exception("could not end %s for user %s", channel, user_pk)
