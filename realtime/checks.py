"""System checks of the app (`python manage.py check`): every missing or wrong piece, with what to write.

Registered with the tag "realtime" by `RealtimeConfig.ready()`, so Django's default run includes
them and `realtime.asgi.realtime_application()` runs them alone before serving: a server never
starts on an error. Start-up itself no longer raises for what is reported here, or `check` could
not run to say it. The ids are a contract (INTEGRATION.md section 2): a project silences a warning
it accepts with `SILENCED_SYSTEM_CHECKS = ["realtime.W001"]`.

Each check reads the one setting it is about, loaded alone: a bad `HEARTBEAT` (E002) hides
neither a rule that does not import (E003) nor a missing Redis (W001).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.utils.module_loading import import_string

from realtime.namespaces import _rule  # the messages of the table's build, which raises at the first subscribe
from realtime.support.conf import ENV_PREFIX, load, problems

TAG = "realtime"

# The apps the app cannot work without, and what each is for (E001).
REQUIRED_APPS: dict[str, str] = {
    "django.contrib.auth": "the users sockets authenticate as",
    "django.contrib.contenttypes": "needed by django.contrib.auth",
    "rest_framework": "the token and publish HTTP APIs",
    "rest_framework_simplejwt.token_blacklist": "refresh tokens retired at logout and rotation",
    "channels": "the WebSocket server",
}
EXAMPLE_REDIS_URL = "redis://127.0.0.1:6379/0"


def installed_apps(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001: an app the realtime app needs is not in INSTALLED_APPS."""
    return [
        checks.Error(
            f"{app!r} is not in INSTALLED_APPS; the realtime app needs it ({purpose}).",
            hint=f'Add the line  "{app}",  to INSTALLED_APPS, above "realtime".',
            id="realtime.E001",
        )
        for app, purpose in REQUIRED_APPS.items()
        if not apps.is_installed(app)
    ]


def setting_values(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E002: a key or value of settings.REALTIME, or a REALTIME_* environment variable, that loading refuses."""
    return [
        checks.Error(
            problem,
            hint="Correct or remove it: docs/configuration.md lists every REALTIME key, its type and its default.",
            id="realtime.E002",
        )
        for problem in problems(getattr(settings, "REALTIME", None), os.environ)
    ]


def namespace_rules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E003: a rule path of REALTIME["NAMESPACES"] that does not import, is not a function or does not take
    (user, name): found now rather than at the first subscribe."""
    errors = []
    for namespace, rules in (_one_setting("NAMESPACES") or {}).items():
        for action in ("subscribe", "publish"):
            try:
                _rule(namespace, action, rules[action])
                problem = _signature_problem(namespace, action, rules[action])
            except ImproperlyConfigured as exc:
                problem = str(exc)
            if problem:
                errors.append(
                    checks.Error(
                        problem,
                        hint=(
                            "Name a function `def rule(user, name) -> bool` (or `async def`) by its dotted path, "
                            "or a built-in one: realtime.namespaces.authenticated, own_user, room_member, nobody."
                        ),
                        id="realtime.E003",
                    )
                )
    return errors


def _signature_problem(namespace: str, action: str, path: str) -> str | None:
    """What is wrong with how the rule at `path` (which imports) is called, if anything."""
    try:
        inspect.signature(import_string(path)).bind(None, "name")
    except TypeError as exc:
        return f"REALTIME NAMESPACES[{namespace!r}][{action!r}]: {path!r} does not take (user, name): {exc}"
    except ValueError:  # no signature to read (some builtins): it may well take them
        return None
    return None


def user_id_field(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E004: SIMPLE_JWT["USER_ID_FIELD"] is not a unique field of the user model, so a token names no one user."""
    from rest_framework_simplejwt.settings import api_settings

    try:
        model = get_user_model()
    except ImproperlyConfigured:  # AUTH_USER_MODEL or django.contrib.auth is wrong: Django's checks and E001 say it
        return []
    name = api_settings.USER_ID_FIELD
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        problem = "is not a field of"
    else:
        problem = None if field.concrete and field.unique else "is not a unique field of"
    if problem is None:
        return []
    return [
        checks.Error(
            f'SIMPLE_JWT["USER_ID_FIELD"] = {name!r} {problem} the user model {model._meta.label}: '
            "tokens could not name their user.",
            hint=f'Set SIMPLE_JWT = {{..., "USER_ID_FIELD": {model._meta.pk.name!r}}} (the primary key), '
            "or name another unique field of the user model.",
            id="realtime.E004",
        )
    ]


def asgi_application(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E005: no ASGI_APPLICATION, so `runserver` (daphne's) serves no sockets."""
    if getattr(settings, "ASGI_APPLICATION", None):
        return []
    # (the variable, not settings.SETTINGS_MODULE, which override_settings hides)
    package = os.environ.get("DJANGO_SETTINGS_MODULE", "").rpartition(".")[0]
    return [
        checks.Error(
            "ASGI_APPLICATION is not set: the project's ASGI application, which serves the sockets, is unknown.",
            hint=(
                f'Set ASGI_APPLICATION = "{package or "mysite"}.asgi.application", where that asgi.py ends with '
                "`application = realtime_application(get_asgi_application())` (from realtime.asgi)."
            ),
            id="realtime.E005",
        )
    ]


def redis_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W001: no Redis with DEBUG off; fine for development, rarely what a deployment means."""
    if settings.DEBUG or _one_setting("REDIS_URL") != "":  # None: invalid, which E002 reports
        return []
    return [
        checks.Warning(
            'REALTIME["REDIS_URL"] is empty and DEBUG is off: history, presence and sessions live in this '
            "process's memory. Only one server process can serve the sockets, a restart loses history and "
            "sessions, and a publication from another process (a worker, a shell) reaches no socket.",
            hint=(
                f'Set REALTIME = {{..., "REDIS_URL": "{EXAMPLE_REDIS_URL}"}} (or the environment variable '
                f"{ENV_PREFIX}REDIS_URL) to a Redis every process shares; if one process is what you mean, "
                'SILENCED_SYSTEM_CHECKS = ["realtime.W001"].'
            ),
            id="realtime.W001",
        )
    ]


def sessions_app(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W002: without django.contrib.sessions a socket cannot authenticate with the session cookie."""
    if apps.is_installed("django.contrib.sessions"):
        return []
    return [
        checks.Warning(
            "'django.contrib.sessions' is not in INSTALLED_APPS: cookie authentication at the handshake is off; "
            "sockets authenticate with a JWT only.",
            hint=(
                "To let a browser logged in to Django open sockets without a token, add the line  "
                '"django.contrib.sessions",  to INSTALLED_APPS (and its SessionMiddleware to MIDDLEWARE); '
                'otherwise SILENCED_SYSTEM_CHECKS = ["realtime.W002"].'
            ),
            id="realtime.W002",
        )
    ]


CHECKS = (installed_apps, setting_values, namespace_rules, user_id_field, asgi_application, redis_url, sessions_app)


def register() -> None:
    """Register every check under the tag "realtime" (idempotent: the registry is a set)."""
    for check in CHECKS:
        checks.register(check, TAG)


def _one_setting(key: str) -> Any | None:
    """`REALTIME[key]` as loading makes it, from the settings or the environment; None when that is invalid."""
    user_settings = getattr(settings, "REALTIME", None)
    env_name = ENV_PREFIX + key
    mine = {key: user_settings[key]} if isinstance(user_settings, Mapping) and key in user_settings else {}
    try:
        return load(mine, {env_name: os.environ[env_name]} if env_name in os.environ else {})[key]
    except ImproperlyConfigured:
        return None
