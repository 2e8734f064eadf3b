"""The token blacklist's admin, without the tokens: a live refresh token is a credential.

simplejwt's `OutstandingTokenAdmin` shows every field read-only, the token text among
them, to any staff user with the view permission: enough to mint access tokens as that
user. Here the token is shown as a fingerprint (the start of its SHA-256), which tells
two tokens apart and matches a token someone holds, and cannot be used.
"""

from __future__ import annotations

import hashlib

from django.contrib import admin
from rest_framework_simplejwt.token_blacklist import admin as blacklist_admin  # registers simplejwt's first
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

FINGERPRINT_CHARS = 16


def fingerprint(token: str) -> str:
    """A short, irreversible name for a token: the first hex digits of its SHA-256."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:FINGERPRINT_CHARS]


class OutstandingTokenAdmin(blacklist_admin.OutstandingTokenAdmin):
    """simplejwt's, read-only as before, with the token replaced by its fingerprint everywhere."""

    list_display = ("jti", "user", "token_fingerprint", "created_at", "expires_at")
    fields = ("jti", "user", "token_fingerprint", "created_at", "expires_at")

    def get_readonly_fields(self, *args, **kwargs) -> list[str]:
        return list(self.fields)

    @admin.display(description="token")
    def token_fingerprint(self, obj: OutstandingToken) -> str:
        return fingerprint(obj.token)


admin.site.unregister(OutstandingToken)
admin.site.register(OutstandingToken, OutstandingTokenAdmin)
