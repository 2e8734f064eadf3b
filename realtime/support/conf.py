"""The one `REALTIME` settings dict: defaults, environment overrides, validation.

Read lazily through `realtime_settings` (like DRF's `api_settings`): nothing is
frozen at import, and `override_settings(REALTIME=...)` takes effect at once.
Precedence, lowest first: the defaults below, `settings.REALTIME`, then the
environment variables `REALTIME_<KEY>`. An unknown key or an invalid value raises
`ImproperlyConfigured` naming the key when it is read; `problems()` lists every
such mistake for the system checks (realtime/checks.py), which stop the servers' start-up.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from realtime.core.redis_urls import (
    CLUSTER_SCHEME,
    REDIS_SCHEMES,
    SENTINEL_SCHEME,
    parse_cluster_url,
    parse_sentinel_url,
)

ENV_PREFIX = "REALTIME_"
NAMESPACE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")  # `\Z`: `$` would let a final newline through


@dataclass(frozen=True)
class Option:
    """One setting: its type, default, lower bound and meaning (shown in the docs)."""

    kind: type
    default: Any
    help: str
    minimum: float = 0


NAMESPACE_DEFAULTS: dict[str, Any] = {
    "subscribe": "realtime.namespaces.authenticated",
    "publish": "realtime.namespaces.authenticated",
    "history_size": 100,
    "history_bytes": 1048576,  # MAX_REPLY_BYTES's default: a recovery from the oldest kept fits one reply
    "history_ttl": 3600,
    "presence": True,
    "join_leave": True,
}

DEFAULT_NAMESPACES: dict[str, dict[str, Any]] = {
    "public": {},
    "room": {
        "subscribe": "realtime.namespaces.room_member",
        "publish": "realtime.namespaces.room_member",
    },
    "user": {
        "subscribe": "realtime.namespaces.own_user",
        "publish": "realtime.namespaces.nobody",
        "history_ttl": 86400,
        "presence": False,
        "join_leave": False,
    },
}


OPTIONS: dict[str, Option] = {
    "REDIS_URL": Option(
        str, "", "The Redis every process shares (history, presence, fan-out, sessions, control); empty: in memory."
    ),
    "REDIS_PREFIX": Option(str, "rt", "Prefix of every Redis key of the app (several deployments may share a Redis)."),
    "LOGIN_FAILURES_PER_USER": Option(int, 10, "Failed logins per username in LOGIN_WINDOW before a pause (429).", 1),
    "LOGIN_FAILURES_PER_ADDRESS": Option(int, 50, "Failed logins per client address in LOGIN_WINDOW (429).", 1),
    "LOGIN_WINDOW": Option(int, 300, "Seconds over which failed logins are counted, and the pause after.", 1),
    "LOGIN_CONCURRENCY": Option(int, 8, "Password checks at once per process (each is ~100 ms of CPU).", 1),
    "LOGIN_WAIT": Option(float, 10.0, "Seconds a login waits for a password-check slot (then 503).", 0.1),
    "METRICS_TOKEN": Option(str, "", "Bearer token of `GET /metrics`; empty: open with DEBUG, refused (403) without."),
    "AUTH_TIMEOUT": Option(float, 10.0, "Seconds an unauthenticated socket may wait for `auth` (then 4501)."),
    "REFRESH_LEAD": Option(float, 30.0, "Seconds before token expiry when `expiring` is pushed."),
    "HEARTBEAT": Option(float, 25.0, "Seconds between server pings.", minimum=0.1),
    "HEARTBEAT_TIMEOUT": Option(float, 10.0, "Extra seconds of client silence before close 4004."),
    "RESUME_WINDOW": Option(float, 120.0, "Seconds a dropped session stays resumable."),
    "PRESENCE_GRACE": Option(float, 10.0, "Seconds a dropped connection keeps its presence (no leave)."),
    "MAX_FRAME_BYTES": Option(int, 65536, "Largest accepted client frame, in bytes (`too_large`).", minimum=64),
    "MAX_ERRORS": Option(int, 10, "Bad frames allowed per ERROR_WINDOW before close 4500 (or 4008)."),
    "ERROR_WINDOW": Option(float, 60.0, "Seconds over which MAX_ERRORS is counted.", minimum=1),
    "RATE": Option(float, 50.0, "Frames per second a connection may send (token bucket refill).", minimum=0.1),
    "RATE_BURST": Option(int, 100, "Token bucket size: frames a connection may send in a burst.", minimum=1),
    "PUBLISH_BYTES_PER_SECOND": Option(
        int, 262144, "Bytes of publications a user may publish per second (sockets and HTTP together).", minimum=1024
    ),
    "MAX_REPLY_BYTES": Option(
        int, 1048576, "Bytes of publications in one `history` or `subscribed` reply.", minimum=1024
    ),
    "MAX_SUBSCRIPTIONS": Option(int, 100, "Subscriptions per connection (`limit_exceeded`).", minimum=1),
    "MAX_CONNECTIONS_PER_USER": Option(int, 20, "Open sockets per user on all processes (4529).", minimum=1),
    "CONNECT_RATE": Option(
        float,
        1.0,
        "Authenticated connects per second per user on all processes (token bucket refill; 4008).",
        minimum=0.001,
    ),
    "CONNECT_BURST": Option(
        int, 30, "Token bucket size: connects a user may make at once (all their sockets coming back).", minimum=1
    ),
    "MAX_UNAUTHENTICATED": Option(
        int, 1000, "Sockets without credentials yet, per process (more are refused at the handshake).", minimum=1
    ),
    "MAX_UNAUTHENTICATED_PER_ADDRESS": Option(
        int, 20, "Sockets without credentials yet, per client address and process (more are refused).", minimum=1
    ),
    "SEND_QUEUE_BYTES": Option(int, 1048576, "Bytes queued for a slow client before close 4013.", minimum=1024),
    "NODE_HEARTBEAT": Option(float, 5.0, "Seconds between a server process's liveness beats.", minimum=0.1),
    "DELIVERY_CHECK": Option(
        float,
        5.0,
        "Seconds between a process's checks that its subscribers got each channel's last publication.",
        minimum=0.1,
    ),
    "CLEANUP_INTERVAL": Option(float, 5.0, "Seconds between stale-session cleanups inside the server.", minimum=0.1),
    "SESSION_RETENTION": Option(float, 7 * 86400.0, "Seconds closed session rows are kept before purging."),
    "USER_CACHE_SECONDS": Option(
        float, 60.0, "Seconds a process keeps a socket's user for the next connects (0: read it every time)."
    ),
    "NAMESPACES": Option(dict, DEFAULT_NAMESPACES, "Channel namespaces and their rules (see docs/configuration.md)."),
}


def _fail(key: str, problem: str, source: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"REALTIME[{key!r}] {problem} (from {source}).")


def _coerce_number(key: str, option: Option, value: Any, source: str) -> int | float:
    if isinstance(value, str):
        try:
            value = option.kind(value.strip())
        except ValueError:
            raise _fail(
                key, f"must be a{'n integer' if option.kind is int else ' number'}, got {value!r}", source
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, f"must be a number, got {value!r}", source)
    if option.kind is int and not float(value).is_integer():
        raise _fail(key, f"must be an integer, got {value!r}", source)
    value = option.kind(value)
    if value < option.minimum:
        raise _fail(key, f"must be at least {option.minimum}, got {value!r}", source)
    return value


def _clean_namespace(name: str, rules: Any, source: str) -> dict[str, Any]:
    """Validate one namespace's rules and fill in the defaults."""
    key = f"NAMESPACES.{name}"
    if not NAMESPACE_NAME.match(name):
        raise _fail(key, "is not a valid namespace name (lowercase letters, digits, _ and -)", source)
    if not isinstance(rules, Mapping):
        raise _fail(key, f"must be a dict of rules, got {rules!r}", source)
    unknown = sorted(set(rules) - set(NAMESPACE_DEFAULTS))
    if unknown:
        raise _fail(key, f"has unknown rule(s) {', '.join(unknown)}; known: {', '.join(NAMESPACE_DEFAULTS)}", source)
    clean = {**NAMESPACE_DEFAULTS, **rules}
    for rule in ("subscribe", "publish"):
        if not isinstance(clean[rule], str) or "." not in clean[rule]:
            raise _fail(f"{key}.{rule}", "must be a dotted path to a permission function", source)
    for rule in ("history_size", "history_bytes", "history_ttl"):
        value = clean[rule]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(f"{key}.{rule}", f"must be a whole number >= 0, got {value!r}", source)
    for rule in ("presence", "join_leave"):
        if not isinstance(clean[rule], bool):
            raise _fail(f"{key}.{rule}", f"must be true or false, got {clean[rule]!r}", source)
    return clean


def _clean_text(key: str, value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise _fail(key, f"must be a string, got {value!r}", source)
    value = value.strip()
    if key == "REDIS_URL" and value and not value.startswith(REDIS_SCHEMES):
        raise _fail(key, f"must start with {', '.join(REDIS_SCHEMES)} (or be empty), got {value!r}", source)
    if key == "REDIS_URL" and value.startswith(SENTINEL_SCHEME):
        try:
            parse_sentinel_url(value)
        except ValueError as exc:
            raise _fail(key, f"is not a Sentinel URL: {exc}", source) from None
    if key == "REDIS_URL" and value.startswith(CLUSTER_SCHEME):
        try:
            parse_cluster_url(value)
        except ValueError as exc:
            raise _fail(key, f"is not a Cluster URL: {exc}", source) from None
    if key == "REDIS_PREFIX" and (not value or any(c.isspace() or c in "{}" for c in value)):
        raise _fail(key, f"must be a non-empty word without spaces or braces, got {value!r}", source)
    return value


def _clean(key: str, value: Any, source: str) -> Any:
    option = OPTIONS[key]
    if option.kind is str:
        return _clean_text(key, value, source)
    if option.kind is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise _fail(key, f"must be a JSON object: {exc}", source) from None
        if not isinstance(value, Mapping) or not value:
            raise _fail(key, "must be a non-empty dict of namespace name to rules", source)
        return {name: _clean_namespace(name, rules, source) for name, rules in value.items()}
    return _coerce_number(key, option, value, source)


def load(user_settings: Mapping[str, Any] | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """Merge defaults, `settings.REALTIME` and `REALTIME_*` variables; validate all."""
    user_settings = user_settings or {}
    if not isinstance(user_settings, Mapping):
        raise ImproperlyConfigured("settings.REALTIME must be a dict.")
    values: dict[str, Any] = {}
    for key in user_settings:
        if key not in OPTIONS:
            raise _fail(key, f"is not a known setting; known: {', '.join(OPTIONS)}", "settings.REALTIME")
    for name in environ:
        if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :] not in OPTIONS:
            raise ImproperlyConfigured(
                f"Environment variable {name} names no REALTIME setting; known: {', '.join(OPTIONS)}."
            )
    for key, option in OPTIONS.items():
        env_name = ENV_PREFIX + key
        if env_name in environ:
            values[key] = _clean(key, environ[env_name], f"environment variable {env_name}")
        elif key in user_settings:
            values[key] = _clean(key, user_settings[key], "settings.REALTIME")
        else:
            values[key] = _clean(key, option.default, "the defaults")
    return values


def problems(user_settings: Any, environ: Mapping[str, str]) -> list[str]:
    """Every mistake `load` would refuse, each as its message, where `load` stops at the first: the
    system check realtime.E002 reports them all at once. Each setting is loaded alone (the
    environment still wins over settings.REALTIME), so one mistake hides no other."""
    if user_settings and not isinstance(user_settings, Mapping):
        parts: list[tuple[Any, Mapping[str, str]]] = [(user_settings, {})]
    else:
        parts = [
            ({key: value}, {})
            for key, value in (user_settings or {}).items()
            if key not in OPTIONS or ENV_PREFIX + key not in environ
        ]
    parts += [({}, {name: value}) for name, value in environ.items() if name.startswith(ENV_PREFIX)]
    found = []
    for part in parts:
        try:
            load(*part)
        except ImproperlyConfigured as exc:
            found.append(str(exc))
    return found


class RealtimeSettings:
    """Attribute access to the validated settings, computed on first use."""

    def __init__(self) -> None:
        self._values: dict[str, Any] | None = None

    @property
    def values(self) -> dict[str, Any]:
        """All settings as a dict, loaded and validated on first access."""
        if self._values is None:
            self._values = load(getattr(settings, "REALTIME", None), os.environ)
        return self._values

    def reload(self) -> None:
        """Forget the cached values; the next access reads the settings again."""
        self._values = None

    def __getattr__(self, name: str) -> Any:
        if name not in OPTIONS:
            raise AttributeError(f"No REALTIME setting {name!r}")
        return self.values[name]


realtime_settings = RealtimeSettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        realtime_settings.reload()


setting_changed.connect(_reload_on_change)
