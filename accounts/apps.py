"""App config of the accounts app (JWT over HTTP and WebSocket)."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Accounts: token endpoints, logout, credential revocation and the socket authentication pieces."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Watch the user model for changes that revoke credentials; count failed logins."""
        from django.contrib.auth.signals import user_login_failed

        from . import receivers, throttling

        receivers.connect()
        user_login_failed.connect(throttling.count_failure, dispatch_uid="accounts.count_login_failure")
