"""Bulk changes of users that do what saving each user would.

`QuerySet.update()` sends no signals, so `User.objects.filter(...).update(is_active=False)`
revokes nothing (`realtime.auth.watch`): the users' open sockets stay up, and their tokens
are refused only while they stay inactive (reactivated, every old token works again).
`deactivate` is the bulk deactivation that revokes.
"""

from __future__ import annotations

from django.db import router, transaction
from django.db.models import QuerySet

from realtime.auth.revocation import revoke_credentials_of


def deactivate(users: QuerySet) -> int:
    """Deactivate the users of the queryset `users`, revoke their tokens and end their sockets; how many.

    Their access and refresh tokens issued until now are refused, and once the
    transaction commits `credentials_revoked` is sent for each (every socket of the user
    closes with 4503, on every process). Users already inactive are revoked again, which
    ends what an earlier `update(is_active=False)` left open. A few queries whatever the
    number of users (read them, update them, one upsert of their revocation records),
    in one transaction.
    """
    model = users.model
    with transaction.atomic(using=router.db_for_write(model)):
        selected = list(users)
        model._default_manager.filter(pk__in=[user.pk for user in selected]).update(is_active=False)
        for user in selected:
            user.is_active = False  # as the receivers of the announcement should see them
        revoke_credentials_of(selected, "deactivated")
    return len(selected)
