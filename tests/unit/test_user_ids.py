"""User ids of any user model on the wire and in the server's keys (`realtime.core.users`): an integer stays a
JSON number, a UUID or a string key becomes a JSON string; an id and its text are one user to the server's
keys and to the control events that reach a user's sockets."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from unittest.mock import ANY

import pytest

from realtime.core import protocol
from realtime.core.frames import publication_parts, splice_position
from realtime.core.protocol import CloseCode
from realtime.core.users import user_id_json, user_key, wire_user, wire_user_id
from realtime.http.api import CanPublish
from realtime.pubsub.switchboard import switchboard
from realtime.sessions.control import disconnect_user, end_channel_for_user
from tests.recorder import Recorder

pytestmark = pytest.mark.unit

MEMBER = uuid.UUID("6f1c0a52-5d0e-4c36-9a57-2b1f4e0c9d11")


@dataclass
class Member:
    """What the wire needs of a user: `pk` and `get_username()` (a model with `member_id` and `email`)."""

    pk: Any
    email: str = "ann@example.org"

    def get_username(self) -> str:
        return self.email


@pytest.mark.parametrize(
    ("pk", "wire"),
    [
        (7, 7),
        (2**63 - 1, 2**63 - 1),  # a BigAutoField's largest: still a number
        (MEMBER, str(MEMBER)),
        ("ann@example.org", "ann@example.org"),
        ("7", "7"),  # a string key stays a string, even of digits
    ],
)
def test_an_integer_id_stays_a_number_and_any_other_becomes_its_string(pk, wire):
    assert wire_user_id(pk) == wire and type(wire_user_id(pk)) is type(wire)
    assert json.loads(user_id_json(pk)) == wire  # the text form says the same


def test_the_server_is_null_and_a_string_id_is_escaped_as_json():
    assert user_id_json(None) == "null"
    tricky = 'a"b\\c\u00e9'
    assert json.loads(user_id_json(tricky)) == tricky


def test_wire_user_is_the_id_and_get_username():
    assert wire_user(Member(MEMBER)) == {"id": str(MEMBER), "username": "ann@example.org"}
    assert wire_user(Member(7, "bob")) == {"id": 7, "username": "bob"}


def test_a_welcome_for_a_uuid_keyed_user_encodes():
    """The fresh-project failure: `TypeError: Object of type UUID is not JSON serializable`."""
    user = wire_user(Member(MEMBER))
    frame = protocol.welcome(
        1, session="s_1", user=user, expires_at=None, heartbeat=25, resume_window=120, resumed=False
    )
    assert json.loads(protocol.encode(frame))["user"] == {"id": str(MEMBER), "username": "ann@example.org"}


@pytest.mark.parametrize(
    ("user", "expected"),
    [(None, None), (7, 7), (MEMBER, str(MEMBER)), ("ann@example.org", "ann@example.org")],
)
def test_a_publication_carries_its_publishers_id_as_the_wire_shows_it(user, expected):
    head, tail = publication_parts("public:lobby", {"text": "hi"}, user, 1234)
    publication = json.loads(splice_position(head, "e1", 5, tail))
    assert publication == {
        "channel": "public:lobby",
        "epoch": "e1",
        "offset": 5,
        "data": {"text": "hi"},
        "user": expected,
        "ts": 1234,
    }


def test_a_uuid_names_a_user_channel():
    """`user:<uuid>` is within the protocol's channel names (section 4: `A-Za-z0-9_.@=-`, 1-128)."""
    request = protocol.parse(json.dumps({"type": "subscribe", "id": 1, "channel": f"user:{MEMBER}"}))
    assert request.channel == f"user:{MEMBER}"


@pytest.mark.parametrize(
    ("pk", "key"),
    [
        (7, "7"),
        ("7", "7"),  # an integer and its text are one key
        (MEMBER, str(MEMBER)),
        (str(MEMBER), str(MEMBER)),  # a UUID and its text too
        ("ann@example.org", "ann@example.org"),
        ("ünï a b", "ünï a b"),  # any text, kept as it is
        ("x" * 200, "x" * 200),
    ],
)
def test_a_users_key_is_the_text_of_its_id_and_the_same_as_the_wire_forms_text(pk, key):
    assert user_key(pk) == key and type(user_key(pk)) is str
    assert user_key(wire_user_id(pk)) == key  # the id a client sees keys the same user


@pytest.mark.parametrize(("pk", "text"), [(7, "7"), (MEMBER, str(MEMBER))])
async def test_control_events_for_an_id_or_its_text_reach_the_same_users_sockets(pk, text):
    """A socket joins under `user_key(user.pk)`; a sender may hold the id (a signal) or its text (a record)."""
    board = switchboard()
    joined_by_id, joined_by_text, bystander = Recorder(), Recorder(), Recorder()
    await board.join(joined_by_id, board.address(), user_key(pk))
    await board.join(joined_by_text, board.address(), user_key(text))
    await board.join(bystander, board.address(), user_key(f"{text}0"))

    await disconnect_user(pk, CloseCode.FORBIDDEN)
    await disconnect_user(text, CloseCode.FORCE_RECONNECT)
    await end_channel_for_user(pk, f"user:{text}", "removed")
    await asyncio.wait_for(board.ping(), 5)  # heard after the events before it

    expected = [
        {"do": "disconnect", "user": text, "code": 4503, "reason": "forbidden", "at": ANY},
        {"do": "disconnect", "user": text, "code": 4011, "reason": "force_reconnect", "at": ANY},
        {"do": "end", "user": text, "channel": f"user:{text}", "reason": "removed"},
    ]
    assert joined_by_id.events == joined_by_text.events == expected
    assert bystander.events == []


class NoStaffUser:
    """A user model on AbstractBaseUser + PermissionsMixin: no `is_staff`."""

    is_authenticated = True

    def __init__(self, perms: set[str]) -> None:
        self.perms = perms

    def has_perm(self, perm: str) -> bool:
        return perm in self.perms


def test_publishing_over_http_needs_no_is_staff_on_the_user_model():
    def allowed(user) -> bool:
        return CanPublish().has_permission(SimpleNamespace(user=user), None)

    assert allowed(NoStaffUser({"realtime.publish"})) is True
    assert allowed(NoStaffUser(set())) is False
