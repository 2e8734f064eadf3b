"""The reference deployment's user admin and admin login, on top of the app's token admins.

The user admin gets the action "Deactivate and disconnect" (`realtime.auth.bulk.deactivate`)
and no lookup on token text (`realtime.auth.token_admin.HidesTokenText`); the admin's login
form is throttled with the token API's counts (`realtime.http.throttling`).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import admin as auth_admin  # registers Django's UserAdmin first
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import ngettext
from rest_framework.exceptions import APIException

from realtime.auth.bulk import deactivate
from realtime.auth.token_admin import HidesTokenText
from realtime.http import throttling


@admin.action(description="Deactivate and disconnect", permissions=["change"])
def deactivate_and_disconnect(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Deactivate the selected users, refuse their tokens and close their sockets on every process."""
    count = deactivate(queryset)
    message = ngettext("Deactivated and disconnected %d user.", "Deactivated and disconnected %d users.", count)
    modeladmin.message_user(request, message % count, messages.SUCCESS)


class UserAdmin(HidesTokenText, auth_admin.UserAdmin):
    """Django's user admin with "Deactivate and disconnect" (unchecking "active" on one user does it too)."""

    actions = (*(auth_admin.UserAdmin.actions or ()), deactivate_and_disconnect)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserAdmin)


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, throttled like the token API and with the same counts: after too many
    failures for a username or from an address even the right password is refused, for a while."""

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        try:
            with throttling.login_attempt(self.request, username if isinstance(username, str) else ""):
                return super().clean()
        except APIException as exc:  # paused (with for how long), busy, or the counts unreachable
            raise ValidationError(str(exc.detail), code=exc.default_code) from exc


admin.site.login_form = AdminLoginForm
