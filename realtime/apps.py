"""App config of the real-time engine."""

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """Connects the app's receivers and validates the REALTIME settings at start-up (a bad value stops it)."""

    name = "realtime"
    verbose_name = "Real-time"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from realtime import receivers  # noqa: F401 - connects the signal receivers
        from realtime.auth import watch
        from realtime.http import throttling
        from realtime.namespaces import namespaces
        from realtime.server import devserver
        from realtime.support.conf import realtime_settings

        watch.connect()  # changes of the user model that revoke credentials
        user_login_failed.connect(throttling.count_failure, dispatch_uid="realtime.count_login_failure")
        realtime_settings.reload()
        realtime_settings.values  # noqa: B018 - loading validates; errors stop start-up
        namespaces()  # imports every rule path now: a wrong one stops start-up, not the first subscribe
        devserver.install()  # `runserver`: Ctrl-C says goodbye to the sockets (no-op elsewhere)
