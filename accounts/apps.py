"""App config of the accounts app (JWT over HTTP and WebSocket)."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Accounts: token endpoints, logout, credential revocation and the socket authentication pieces."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Watch the user model for changes that revoke credentials."""
        from . import receivers

        receivers.connect()
