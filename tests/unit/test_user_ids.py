"""User ids of any user model on the wire and in the server's keys (`realtime.core.users`): an integer stays a
JSON number, a UUID or a string key becomes a JSON string; control groups stay valid channel-layer names."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from channels.layers import BaseChannelLayer

from realtime.core import protocol
from realtime.core.frames import publication_parts, splice_position
from realtime.core.users import user_id_json, wire_user, wire_user_id
from realtime.http.api import CanPublish
from realtime.sessions.control import user_group

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


@pytest.mark.parametrize("pk", [7, MEMBER, "ann@example.org", "x" * 200, "ünï", "a b"])
def test_a_users_group_is_a_valid_group_name_for_any_key(pk):
    assert BaseChannelLayer().require_valid_group_name(user_group(pk))


def test_a_key_and_its_text_are_one_group_and_plain_ids_stay_readable():
    assert user_group(7) == user_group("7") == "rt.user.7"
    assert user_group(MEMBER) == user_group(str(MEMBER)) == f"rt.user.{MEMBER}"


def test_keys_outside_the_group_alphabet_get_digests_that_no_plain_key_can_take():
    groups = {user_group(pk) for pk in ("ann@example.org", "bob@example.org", "x" * 81, "x" * 82)}
    assert len(groups) == 4 and all(group.startswith("rt.userh.") for group in groups)
    assert user_group("x" * 80) == "rt.user." + "x" * 80  # the longest plain one
    assert user_group("h.abc").startswith("rt.user.")  # a plain key never lands under `rt.userh.`


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
