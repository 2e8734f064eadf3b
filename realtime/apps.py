"""App config of the real-time engine."""

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """Connects the app's receivers and registers its system checks (realtime/checks.py)."""

    name = "realtime"
    verbose_name = "Real-time"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from realtime import (
            checks,
            receivers,  # noqa: F401 - connects the signal receivers
        )
        from realtime.auth import watch
        from realtime.http import throttling
        from realtime.server import devserver
        from realtime.support.conf import realtime_settings

        # A bad setting or rule path is the checks' to report (`manage.py check`; the servers run them
        # and refuse to start): raising here would stop `check` itself. Reading one still raises.
        checks.register()
        watch.connect()  # changes of the user model that revoke credentials
        user_login_failed.connect(throttling.count_failure, dispatch_uid="realtime.count_login_failure")
        realtime_settings.reload()
        devserver.install()  # `runserver`: Ctrl-C says goodbye to the sockets (no-op elsewhere)
