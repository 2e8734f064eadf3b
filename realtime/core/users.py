"""A user as the wire shows it, whatever `AUTH_USER_MODEL` is: its id and its name. No Django, no I/O.

A project's user model may have any primary key (an integer, a UUID, a string) under any
field name, and any `USERNAME_FIELD`. On the wire (`welcome.user`, presence members,
`join`/`leave`, a publication's `user`) an integer id stays a JSON number, as the protocol's
examples show, and any other id is its string: a UUID as `str(uuid)`, the same text that
names its channel `user:<id>` (`realtime.namespaces.own_user`). What the server keys by user
(connection slots, publish quotas, session records, control groups) takes `str()` of the
primary key, which is the same text for an id and its wire form, so the two never disagree.

Computed when a frame is built (at most once per socket and subscription or publication),
never per delivered message: publications carry their `user` as text, spliced, not parsed.
"""

from __future__ import annotations

import json
from typing import Any

UserId = int | str


def user_key(user_id: Any) -> str:
    """How the server keys a user (the engine's revocation record, control events): `str()` of its id."""
    return str(user_id)


def wire_user_id(pk: Any) -> UserId:
    """The id as the wire shows it: an integer stays an integer, anything else becomes its string.

    `json.dumps` cannot take a UUID (the `welcome` of a UUID-keyed user failed with a
    `TypeError`), and a string is what a client can compare with a `user:<id>` channel name.
    """
    return int(pk) if isinstance(pk, int) else str(pk)


def user_id_json(pk: Any) -> str:
    """The JSON text of `wire_user_id(pk)`, `null` for None (the server): for frames built as text."""
    if pk is None:
        return "null"
    if isinstance(pk, int):
        return str(int(pk))
    return json.dumps(str(pk), ensure_ascii=False)


def wire_user(user: Any) -> dict[str, UserId]:
    """`{"id", "username"}` of a user (`welcome`, presence, `join`/`leave`): its wire id and `get_username()`.

    `get_username()` reads the model's `USERNAME_FIELD` (an email, say); `str()` keeps a
    non-text one (a number, a UUID) serialisable.
    """
    return {"id": wire_user_id(user.pk), "username": str(user.get_username())}
