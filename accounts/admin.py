"""The token blacklist's admin, without the tokens: a live refresh token is a credential.

simplejwt's `OutstandingTokenAdmin` shows every field read-only, the token text among
them, to any staff user with the view permission: enough to mint access tokens as that
user. Here the token is shown as a fingerprint (the start of its SHA-256), which tells
two tokens apart and matches a token someone holds, and cannot be used.

Also the user admin's action "Deactivate and disconnect" (`accounts.bulk.deactivate`).
"""

from __future__ import annotations

import hashlib

from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin  # registers Django's UserAdmin first
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import ngettext
from rest_framework_simplejwt.token_blacklist import admin as blacklist_admin  # registers simplejwt's first
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from .bulk import deactivate

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


@admin.action(description="Deactivate and disconnect", permissions=["change"])
def deactivate_and_disconnect(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Deactivate the selected users, refuse their tokens and close their sockets on every process."""
    count = deactivate(queryset)
    message = ngettext("Deactivated and disconnected %d user.", "Deactivated and disconnected %d users.", count)
    modeladmin.message_user(request, message % count, messages.SUCCESS)


class UserAdmin(auth_admin.UserAdmin):
    """Django's user admin with "Deactivate and disconnect" (unchecking "active" on one user does it too)."""

    actions = (*(auth_admin.UserAdmin.actions or ()), deactivate_and_disconnect)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserAdmin)
