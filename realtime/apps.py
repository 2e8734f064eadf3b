"""App config of the real-time engine."""

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """Validates the REALTIME settings at start-up so a bad value stops the server."""

    name = "realtime"
    verbose_name = "Real-time"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - connects the signal receivers
        from .conf import realtime_settings
        from .namespaces import namespaces

        realtime_settings.reload()
        realtime_settings.values  # noqa: B018 - loading validates; errors stop start-up
        namespaces()  # imports every rule path now: a wrong one stops start-up, not the first subscribe
        from . import devserver

        devserver.install()  # `runserver`: Ctrl-C says goodbye to the sockets (no-op elsewhere)
