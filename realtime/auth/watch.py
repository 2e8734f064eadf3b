"""Turn changes of a user into credential revocations (connected in `RealtimeConfig.ready`).

Deactivation (`is_active` True -> False), a new password and deletion revoke the
user's credentials, whether they come from the admin, a form or plain ORM code.
Changes are found without a query per save: `post_init` remembers the values the
instance was loaded with and `post_save` compares. Not seen: `QuerySet.update()`
and raw SQL (they send no signals; deactivate in bulk with `realtime.auth.bulk.deactivate`),
and saves through a proxy of the user model.
`refresh_from_db()` sends no `post_init` for the instance itself: a change made
elsewhere and then refreshed into it is revoked again at its next save (harmless
but for tokens issued in between).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, identify_hasher, is_password_usable
from django.db.models.signals import post_delete, post_init, post_save

from realtime.auth.revocation import announce_revocation, revoke_credentials

# Where an instance keeps the credential fields it was loaded with; a field missing
# from it was deferred, its value never read.
_SNAPSHOT = "_realtime_loaded_credentials"
_FIELDS = ("is_active", "password")
_UNKNOWN = object()  # for comparisons only; the snapshot stays plain data (it is pickled with the instance)


def connect() -> None:
    """Connect the receivers to the project's user model."""
    user_model = get_user_model()
    post_init.connect(remember_credentials, sender=user_model, dispatch_uid="realtime.remember_credentials")
    post_save.connect(revoke_on_change, sender=user_model, dispatch_uid="realtime.revoke_on_change")
    post_delete.connect(revoke_on_delete, sender=user_model, dispatch_uid="realtime.revoke_on_delete")


def remember_credentials(sender: type, instance: Any, **kwargs: Any) -> None:
    """`post_init`: remember the credential fields the instance starts with."""
    # __dict__, not getattr: reading a deferred field would cost a query per instance.
    instance.__dict__[_SNAPSHOT] = {name: instance.__dict__[name] for name in _FIELDS if name in instance.__dict__}


def revoke_on_change(
    sender: type, instance: Any, created: bool, update_fields: frozenset[str] | None, **kwargs: Any
) -> None:
    """`post_save`: a deactivation or a new password revokes the user's credentials."""
    loaded = instance.__dict__.get(_SNAPSHOT, {})
    before = {name: loaded.get(name, _UNKNOWN) for name in _FIELDS}
    after = {name: instance.__dict__.get(name, _UNKNOWN) for name in _FIELDS}
    saved = {name for name in _FIELDS if update_fields is None or name in update_fields}
    # What the database holds now: the new value of each saved field, the old one of the rest.
    now = {name: (after if name in saved else before)[name] for name in _FIELDS}
    instance.__dict__[_SNAPSHOT] = {name: value for name, value in now.items() if value is not _UNKNOWN}
    if created:
        return
    reason = _reason(instance, before, after, saved)
    if reason is not None:
        revoke_credentials(instance, reason)


def revoke_on_delete(sender: type, instance: Any, **kwargs: Any) -> None:
    """`post_delete`: announce the deletion (the revocation record went with the user)."""
    announce_revocation(instance, "deleted")


def _reason(instance: Any, before: dict[str, Any], after: dict[str, Any], saved: set[str]) -> str | None:
    # Deactivating an instance loaded without is_active counts too: at worst an
    # already inactive user is revoked again, which changes nothing.
    was_active = before["is_active"] is _UNKNOWN or bool(before["is_active"])
    if "is_active" in saved and after["is_active"] is not _UNKNOWN and not after["is_active"] and was_active:
        return "deactivated"
    old, new = before["password"], after["password"]
    if "password" in saved and new is not _UNKNOWN and new != old and not _is_hash_upgrade(instance, old, new):
        return "password_changed"
    return None


def _is_hash_upgrade(instance: Any, old: Any, new: str) -> bool:
    # Django's check_password() rehashes an outdated hash on a successful login. It
    # marks that by resetting `_password` to None ("Password hash upgrades shouldn't
    # be considered password changes", AbstractBaseUser.check_password), while
    # set_password() leaves the raw password there until save() ends. Without this,
    # the iteration bump of every Django release would log everyone out of every
    # device at their next login.
    if getattr(instance, "_password", None) is not None or not isinstance(old, str):
        return False
    if not (is_password_usable(old) and is_password_usable(new)):
        return False
    try:
        old_hasher = identify_hasher(old)
    except ValueError:
        return False
    # The same test Django's hashers.check_password() uses to decide to rehash.
    preferred = get_hasher("default")
    return old_hasher.algorithm != preferred.algorithm or preferred.must_update(old)
