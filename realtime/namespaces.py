"""Channel namespaces and their permission rules.

A rule is an async function `rule(user, name) -> bool` named by dotted path in
`REALTIME["NAMESPACES"]`, so a project adds a namespace without touching the
consumer. The built-in rules are below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

from .conf import realtime_settings
from .exceptions import BadRequest, UnknownNamespace
from .protocol import CHANNEL_RE

Rule = Callable[[Any, str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Namespace:
    """One namespace's rules, with the permission functions imported."""

    name: str
    subscribe: Rule
    publish: Rule
    history_size: int
    history_ttl: int
    presence: bool
    join_leave: bool


_cache: tuple[int, dict[str, Namespace]] | None = None


def namespaces() -> dict[str, Namespace]:
    """Every configured namespace (imported once per settings object)."""
    global _cache
    values = realtime_settings.values
    if _cache is None or _cache[0] != id(values):
        table = {}
        for name, rules in values["NAMESPACES"].items():
            table[name] = Namespace(
                name=name,
                subscribe=import_string(rules["subscribe"]),
                publish=import_string(rules["publish"]),
                history_size=rules["history_size"],
                history_ttl=rules["history_ttl"],
                presence=rules["presence"],
                join_leave=rules["join_leave"],
            )
        _cache = (id(values), table)
    return _cache[1]


def resolve(channel: str) -> tuple[Namespace, str]:
    """`"room:kitchen"` -> (the `room` namespace, `"kitchen"`); `BadRequest` or `UnknownNamespace` otherwise."""
    match = CHANNEL_RE.match(channel) if isinstance(channel, str) else None
    if match is None:
        raise BadRequest("`channel` must be `namespace:name` (name: 1-128 of A-Za-z0-9_.@=-).")
    namespace = namespaces().get(match.group(1))
    if namespace is None:
        raise UnknownNamespace(f"No namespace {match.group(1)!r}.")
    return namespace, match.group(2)


# ---------------------------------------------------------------- built-in rules


async def authenticated(user, name: str) -> bool:
    """Any authenticated user."""
    return bool(getattr(user, "is_authenticated", False))


async def nobody(user, name: str) -> bool:
    """No one (the server publishes; sockets may not)."""
    return False


async def own_user(user, name: str) -> bool:
    """Only the user whose id is the channel name (`user:7`)."""
    return bool(getattr(user, "is_authenticated", False)) and str(user.pk) == name


async def room_member(user, name: str) -> bool:
    """Members of the `Room` whose slug is the channel name."""
    from .models import Room

    if not getattr(user, "is_authenticated", False):
        return False
    return await Room.objects.filter(slug=name, members=user).aexists()
