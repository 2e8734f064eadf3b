"""The token blacklist's admin, without the tokens: a live refresh token is a credential.

simplejwt's `OutstandingTokenAdmin` shows every field read-only, the token text among
them, to any staff user with the view permission: enough to mint access tokens as that
user. Here the token is shown as a fingerprint (the start of its SHA-256), which tells
two tokens apart and matches a token someone holds, and cannot be used. Nor can the token
text be filtered on: a change list that answers `?token__regex=^eyJ...[A-M]` with one row or
none gives the token away a character at a time. Every lookup that ends on it is refused (as
Django's `UserAdmin` refuses lookups on `password`), here and in every admin related to it.
"""

from __future__ import annotations

import hashlib

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model
from django.http import HttpRequest
from rest_framework_simplejwt.token_blacklist import admin as blacklist_admin  # registers simplejwt's first
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

FINGERPRINT_CHARS = 16


def fingerprint(token: str) -> str:
    """A short, irreversible name for a token: the first hex digits of its SHA-256."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:FINGERPRINT_CHARS]


def reaches_token_text(model: type[Model], lookup: str) -> bool:
    """Whether the admin lookup `lookup` on `model` (say `token__token__regex`) filters on a token's text."""
    for part in lookup.split("__"):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:  # a lookup (`regex`) or a transform: the path has ended
            return False
        if model is OutstandingToken and field.name == "token":
            return True
        if not field.is_relation or field.related_model is None:
            return False
        model = field.related_model
    return False


class HidesTokenText:
    """Admin mixin: no filter on the token text, through whatever relations (see the module's docstring)."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return not reaches_token_text(self.model, lookup) and super().lookup_allowed(lookup, value, request)


class OutstandingTokenAdmin(HidesTokenText, blacklist_admin.OutstandingTokenAdmin):
    """simplejwt's, read-only as before, with the token replaced by its fingerprint everywhere."""

    list_display = ("jti", "user", "token_fingerprint", "created_at", "expires_at")
    fields = ("jti", "user", "token_fingerprint", "created_at", "expires_at")

    def get_readonly_fields(self, *args, **kwargs) -> list[str]:
        return list(self.fields)

    @admin.display(description="token")
    def token_fingerprint(self, obj: OutstandingToken) -> str:
        return fingerprint(obj.token)


class BlacklistedTokenAdmin(HidesTokenText, blacklist_admin.BlacklistedTokenAdmin):
    """simplejwt's, with no filter on the text of the tokens (`token__token__...`)."""


admin.site.unregister(OutstandingToken)
admin.site.register(OutstandingToken, OutstandingTokenAdmin)
admin.site.unregister(BlacklistedToken)
admin.site.register(BlacklistedToken, BlacklistedTokenAdmin)
