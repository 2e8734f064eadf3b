"""App config of the reference deployment's accounts app: the demo page and its users, the user admin."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Accounts of the reference deployment; everything a socket needs is in the `realtime` app."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
