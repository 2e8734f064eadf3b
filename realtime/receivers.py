"""Signal receivers: revoked credentials end every socket of the user, on every process."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from accounts.signals import credentials_revoked

from .control import disconnect_user_sync
from .protocol import CloseCode

logger = logging.getLogger(__name__)


@receiver(credentials_revoked, dispatch_uid="realtime.disconnect_revoked_user")
def disconnect_revoked_user(sender, user, reason: str, **kwargs) -> None:
    """Logout, deactivation, a password change or deletion: close the user's sockets with 4503."""
    try:
        disconnect_user_sync(user.pk, CloseCode.FORBIDDEN, "forbidden")
    except Exception:  # the revocation itself stands; the layer being down must not undo it
        logger.exception("could not reach the sockets of user %s (%s)", user.pk, reason)
