"""Channel namespaces and their permission rules.

A rule is a function `rule(user, name) -> bool`, plain or `async`, named by dotted path in
`REALTIME["NAMESPACES"]`, so a project adds a namespace without touching the consumer. A
plain rule may use the ORM: it is wrapped once, when the table is built, in Channels'
`database_sync_to_async`, so it runs off the event loop. The built-in rules are below.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from asgiref.sync import iscoroutinefunction
from channels.db import database_sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from realtime.core.errors import BadRequest, PermissionDenied, UnknownNamespace
from realtime.core.protocol import CHANNEL_RE
from realtime.support.conf import realtime_settings
from realtime.support.services import backing_service

Rule = Callable[[Any, str], Awaitable[bool]]
Action = Literal["subscribe", "publish"]


@dataclass(frozen=True, slots=True)
class Namespace:
    """One namespace's rules, with the permission functions imported."""

    name: str
    subscribe: Rule
    publish: Rule
    history_size: int
    history_bytes: int
    history_ttl: int
    presence: bool
    join_leave: bool


# A memo of the settings, not state: the table built from one settings object, kept with it (like `realtime_settings`).
_cache: tuple[dict, dict[str, Namespace]] | None = None


def namespaces() -> dict[str, Namespace]:
    """Every configured namespace, its rules imported once per settings object (a rule path that does
    not import raises here; the system check realtime.E003 reports it before any server starts)."""
    global _cache
    values = realtime_settings.values
    if _cache is None or _cache[0] is not values:
        table = {}
        for name, rules in values["NAMESPACES"].items():
            table[name] = Namespace(
                name=name,
                subscribe=_rule(name, "subscribe", rules["subscribe"]),
                publish=_rule(name, "publish", rules["publish"]),
                history_size=rules["history_size"],
                history_bytes=rules["history_bytes"],
                history_ttl=rules["history_ttl"],
                presence=rules["presence"],
                join_leave=rules["join_leave"],
            )
        _cache = (values, table)
    return _cache[1]


def _rule(namespace: str, action: str, path: str) -> Rule:
    where = f"REALTIME NAMESPACES[{namespace!r}][{action!r}]"
    try:
        rule = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{where}: cannot import {path!r}: {exc}") from exc
    if not callable(rule):
        raise ImproperlyConfigured(f"{where}: {path!r} is not callable")
    if iscoroutinefunction(rule):
        return rule
    target = rule
    while isinstance(target, functools.partial):
        target = target.func
    if not inspect.isroutine(target) or inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        raise ImproperlyConfigured(
            f"{where}: {path!r} is not a function; a rule is a plain or `async` function "
            f"`rule(user, name) -> bool` (got {type(rule).__name__} {rule!r})"
        )
    return _off_the_loop(rule, path)


def _off_the_loop(rule: Callable[[Any, str], bool], path: str) -> Rule:
    """A plain rule as an async one that runs in Channels' database thread (the ORM allowed)."""

    @functools.wraps(rule)
    def checked(user, name: str) -> bool:
        answer = rule(user, name)
        if inspect.isawaitable(answer):  # a sync wrapper around an async rule: never grant on a coroutine
            if inspect.iscoroutine(answer):
                answer.close()
            raise TypeError(f"the namespace rule {path} returned an awaitable: declare it `async def`")
        return answer

    return database_sync_to_async(checked)


def resolve(channel: str) -> tuple[Namespace, str]:
    """`"room:kitchen"` -> (the `room` namespace, `"kitchen"`); `BadRequest` or `UnknownNamespace` otherwise."""
    match = CHANNEL_RE.match(channel) if isinstance(channel, str) else None
    if match is None:
        raise BadRequest("`channel` must be `namespace:name` (name: 1-128 of A-Za-z0-9_.@=-).")
    namespace = namespaces().get(match.group(1))
    if namespace is None:
        raise UnknownNamespace(f"No namespace {match.group(1)!r}.")
    return namespace, match.group(2)


async def allowed(namespace: Namespace, user, name: str, action: Action, request_id=None) -> bool:
    """Whether the namespace's `action` rule ("subscribe", which also covers history and
    presence, or "publish") lets `user` act on the channel `name`; a backing service
    that fails is `unavailable`. The one access check of the socket and the HTTP API."""
    rule = namespace.subscribe if action == "subscribe" else namespace.publish
    async with backing_service(request_id):
        return await rule(user, name)


async def check_access(namespace: Namespace, user, name: str, action: Action, request_id=None) -> None:
    """`allowed`, or `permission_denied` naming what was refused."""
    if not await allowed(namespace, user, name, action, request_id):
        raise PermissionDenied(f"You may not {action} to {namespace.name}:{name}.", request_id=request_id)


# ---------------------------------------------------------------- built-in rules


async def authenticated(user, name: str) -> bool:
    """Any authenticated user."""
    return bool(getattr(user, "is_authenticated", False))


async def nobody(user, name: str) -> bool:
    """No one (the server publishes; sockets may not)."""
    return False


async def own_user(user, name: str) -> bool:
    """Only the user whose id is the channel name: `user:7`, `user:<uuid>` (`str()` of the primary key, as on
    the wire; a string key outside the channel-name characters cannot name a channel)."""
    return bool(getattr(user, "is_authenticated", False)) and str(user.pk) == name


async def room_member(user, name: str) -> bool:
    """Members of the `Room` whose slug is the channel name."""
    from realtime.models import Room

    if not getattr(user, "is_authenticated", False):
        return False
    return await Room.objects.filter(slug=name, members=user).aexists()
