"""Signals of the accounts app.

`credentials_revoked` is how this app tells the rest of the project that a user's
existing credentials stopped being valid, without importing any of it: the
real-time engine listens and closes every socket of the user (4503) on every
server process.
"""

from django.dispatch import Signal

#: Sent after the transaction that revoked a user's credentials commits.
#:
#: Arguments: ``sender`` is the user model (``get_user_model()``); ``user`` is the
#: user (for ``"deleted"``, a copy taken before the row went, so ``user.pk`` is
#: still set); ``reason`` is one of `REASONS`. Access tokens issued before the
#: revocation are rejected from then on (`accounts.models.CredentialState`).
credentials_revoked = Signal()

#: Every `reason` `credentials_revoked` is sent with.
REASONS = frozenset({"logout", "deactivated", "password_changed", "deleted"})
