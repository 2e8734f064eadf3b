"""The protocol module on its own: parsing, validation, frame building, code tables."""

import json
import re
from pathlib import Path

import pytest

from realtime.core import protocol as p
from realtime.core.errors import BadRequest, Disconnect, TooLarge

pytestmark = pytest.mark.unit


def parse(frame) -> p.Request:
    return p.parse(json.dumps(frame))


def bad(frame_or_text) -> BadRequest:
    text = frame_or_text if isinstance(frame_or_text, str) else json.dumps(frame_or_text)
    with pytest.raises(BadRequest) as info:
        p.parse(text)
    assert info.value.code == p.ErrorCode.BAD_REQUEST
    return info.value


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "auth", "token": "t", "id": 1}, p.Auth(1, "t")),
        ({"type": "auth", "token": "t", "resume": "s_1"}, p.Auth(None, "t", "s_1")),
        ({"type": "refresh", "token": "t", "id": "r"}, p.Refresh("r", "t")),
        ({"type": "ping", "id": 3}, p.Ping(3)),
        ({"type": "ping"}, p.Ping(None)),
        ({"type": "pong"}, p.Pong(None)),
        ({"type": "subscribe", "id": 2, "channel": "room:kitchen"}, p.Subscribe(2, "room:kitchen")),
        (
            {"type": "subscribe", "id": 2, "channel": "room:k", "recover": {"epoch": "e", "offset": 41}},
            p.Subscribe(2, "room:k", p.Position("e", 41)),
        ),
        ({"type": "unsubscribe", "id": 3, "channel": "user:7"}, p.Unsubscribe(3, "user:7")),
        ({"type": "publish", "id": 4, "channel": "public:a", "data": None}, p.Publish(4, "public:a", None)),
        (
            {"type": "publish", "channel": "public:a", "data": [1, {"x": "é"}]},
            p.Publish(None, "public:a", [1, {"x": "é"}]),
        ),
        ({"type": "history", "id": 5, "channel": "public:a"}, p.History(5, "public:a")),
        (
            {"type": "history", "id": 5, "channel": "public:a", "since": {"epoch": "e", "offset": 0}, "limit": 50},
            p.History(5, "public:a", p.Position("e", 0), 50),
        ),
        ({"type": "presence", "id": 6, "channel": "public:a"}, p.Presence(6, "public:a")),
        ({"type": "ping", "id": 1, "extra": "ignored"}, p.Ping(1)),
        ({"type": "subscribe", "channel": "public:" + "a" * 128}, p.Subscribe(None, "public:" + "a" * 128)),
        ({"type": "subscribe", "channel": "public:A-z_0.9@x=y"}, p.Subscribe(None, "public:A-z_0.9@x=y")),
    ],
)
def test_parse_valid_requests(frame, expected):
    assert parse(frame) == expected


@pytest.mark.parametrize(
    "text",
    ["", "not json", "{", "[1, 2]", '"auth"', "42", "null", "true", '{"type": 1}', "{}", '{"type": null}'],
)
def test_malformed_frames_are_bad_requests_without_id(text):
    assert bad(text).request_id is None


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "nope", "id": 9},
        {"type": "auth", "id": 9},
        {"type": "auth", "id": 9, "token": ""},
        {"type": "auth", "id": 9, "token": 5},
        {"type": "auth", "id": 9, "token": "t", "resume": 1},
        {"type": "refresh", "id": 9},
        {"type": "subscribe", "id": 9},
        {"type": "subscribe", "id": 9, "channel": 5},
        {"type": "subscribe", "id": 9, "channel": "nonamespace"},
        {"type": "subscribe", "id": 9, "channel": "public:"},
        {"type": "subscribe", "id": 9, "channel": ":name"},
        {"type": "subscribe", "id": 9, "channel": "public:has space"},
        {"type": "subscribe", "id": 9, "channel": "public:a:b"},
        {"type": "subscribe", "id": 9, "channel": "Public:a"},
        {"type": "subscribe", "id": 9, "channel": "public:" + "a" * 129},
        {"type": "subscribe", "id": 9, "channel": "public:ü"},
        {"type": "subscribe", "id": 9, "channel": "public:a\n"},  # `$` would match before a final newline
        {"type": "publish", "id": 9, "channel": "public:a\n", "data": 1},
        {
            "type": "auth",
            "id": 9,
            "token": "t",
            "resume": "s",
            "positions": {"public:a\n": {"epoch": "e", "offset": 1}},
        },
        {"type": "subscribe", "id": 9, "channel": "public:a", "recover": "x"},
        {"type": "subscribe", "id": 9, "channel": "public:a", "recover": {"offset": 1}},
        {"type": "subscribe", "id": 9, "channel": "public:a", "recover": {"epoch": "e"}},
        {"type": "subscribe", "id": 9, "channel": "public:a", "recover": {"epoch": "e", "offset": -1}},
        {"type": "subscribe", "id": 9, "channel": "public:a", "recover": {"epoch": "e", "offset": 1.5}},
        {"type": "subscribe", "id": 9, "channel": "public:a", "recover": {"epoch": "e", "offset": True}},
        {"type": "unsubscribe", "id": 9},
        {"type": "publish", "id": 9, "channel": "public:a"},
        {"type": "history", "id": 9, "channel": "public:a", "limit": 0},
        {"type": "history", "id": 9, "channel": "public:a", "limit": "5"},
        {"type": "history", "id": 9, "channel": "public:a", "limit": 1001},
        {"type": "history", "id": 9, "channel": "public:a", "since": 3},
        {"type": "presence", "id": 9, "channel": None},
    ],
)
def test_invalid_requests_keep_their_id(frame):
    error = bad(frame)
    assert error.request_id == 9
    assert error.message


@pytest.mark.parametrize("request_id", [True, 1.5, None, [], {}, "x" * 65])
def test_invalid_ids_are_rejected(request_id):
    error = bad({"type": "ping", "id": request_id})
    assert error.request_id is None


def test_deeply_nested_json_is_a_bad_request():
    assert "nested" in bad("[" * 100000).message


def test_longest_string_id_is_accepted():
    assert parse({"type": "ping", "id": "x" * 64}) == p.Ping("x" * 64)


def test_unknown_type_is_not_echoed_at_length():
    error = bad({"type": "x" * 10000, "id": 1})
    assert len(error.message) < 200


def test_size_check_counts_utf8_bytes():
    p.check_size("a" * 100, 100)
    with pytest.raises(TooLarge):
        p.check_size("a" * 101, 100)
    p.check_size("é" * 50, 100)  # 100 bytes
    with pytest.raises(TooLarge) as info:
        p.check_size("é" * 51, 100)  # 102 bytes, 51 characters
    assert info.value.code == p.ErrorCode.TOO_LARGE


def test_builders_produce_the_protocol_frames():
    assert p.welcome(
        1,
        session="s_1",
        user={"id": 7, "username": "ann"},
        expires_at=5,
        heartbeat=25.0,
        resume_window=120,
        resumed=False,
    ) == {
        "type": "welcome",
        "id": 1,
        "session": "s_1",
        "user": {"id": 7, "username": "ann"},
        "expires_at": 5,
        "heartbeat": 25,
        "resume_window": 120,
        "resumed": False,
    }
    assert (
        p.welcome(None, session="s", user={}, expires_at=None, heartbeat=0.5, resume_window=1, resumed=True)[
            "heartbeat"
        ]
        == 0.5
    )
    assert p.error(p.ErrorCode.FORBIDDEN, "no", 3) == {"type": "error", "id": 3, "code": "forbidden", "message": "no"}
    assert "id" not in p.error(p.ErrorCode.INTERNAL, "x")
    assert p.ping() == {"type": "ping"}
    assert p.pong(None) == {"type": "pong"}
    assert p.pong("a") == {"type": "pong", "id": "a"}
    assert p.expiring(10) == {"type": "expiring", "expires_at": 10}
    assert p.refreshed(9, 11) == {"type": "refreshed", "id": 9, "expires_at": 11}
    pub = {"channel": "public:a", "epoch": "e", "offset": 3, "data": {"x": 1}, "user": 7, "ts": 1000}
    assert p.subscribed(2, "public:a", "e", 3, True, [pub]) == {
        "type": "subscribed",
        "id": 2,
        "channel": "public:a",
        "epoch": "e",
        "offset": 3,
        "recovered": True,
        "publications": [pub],
    }
    assert p.unsubscribed(3, "public:a") == {"type": "unsubscribed", "id": 3, "channel": "public:a"}
    assert p.unsubscribed(None, "room:k", "removed") == {
        "type": "unsubscribed",
        "channel": "room:k",
        "reason": "removed",
    }
    assert p.published(4, "public:a", "e", 58) == {
        "type": "published",
        "id": 4,
        "channel": "public:a",
        "epoch": "e",
        "offset": 58,
    }
    assert p.history(5, "public:a", "e", 3, []) == {
        "type": "history",
        "id": 5,
        "channel": "public:a",
        "epoch": "e",
        "offset": 3,
        "publications": [],
    }
    members = [{"id": 7, "username": "ann", "connections": 2}]
    assert p.presence(6, "public:a", members) == {
        "type": "presence",
        "id": 6,
        "channel": "public:a",
        "members": members,
    }
    user = {"id": 7, "username": "ann"}
    assert p.join("public:a", user) == {"type": "join", "channel": "public:a", "user": user}
    assert p.leave("public:a", user) == {"type": "leave", "channel": "public:a", "user": user}


def test_encode_is_compact_utf8_json():
    assert p.encode({"type": "x", "data": "é"}) == '{"type":"x","data":"é"}'


@pytest.mark.parametrize("code", list(p.CloseCode))
def test_every_close_code_has_a_disconnect_frame(code):
    frame = p.disconnect(code)
    assert frame == {"type": "disconnect", "code": int(code), "reason": code.reason, "reconnect": code.reconnect}


def test_reconnect_follows_the_code_ranges():
    for code in p.CloseCode:
        if 4000 <= code < 4500:
            assert code.reconnect
        elif code >= 4500:
            assert not code.reconnect
    assert not p.CloseCode.NORMAL.reconnect
    assert p.CloseCode.GOING_AWAY.reconnect and p.CloseCode.INTERNAL_ERROR.reconnect
    assert p.disconnect(p.CloseCode.FORBIDDEN, "custom")["reason"] == "custom"


def test_disconnect_exception_defaults_to_the_code_reason():
    assert Disconnect(p.CloseCode.SLOW).reason == "slow"
    assert Disconnect(4009, "x").code is p.CloseCode.TOKEN_EXPIRED


def test_codes_match_the_protocol_document():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    documented_errors = set(re.findall(r"^\| `([a-z_]+)`(?: / `([a-z_]+)`)? \|", doc, re.M))
    documented = {c for pair in documented_errors for c in pair if c}
    assert {c.value for c in p.ErrorCode} <= documented
    documented_closes = {int(c) for c in re.findall(r"^\| (\d{4}) \|", doc, re.M)}
    assert documented_closes == {int(c) for c in p.CloseCode}


def test_sections_1_to_10_and_the_revisions_are_the_shared_specification_word_for_word():
    """docs/protocol.md keeps the shared specification's text; extensions go to section 11 only."""
    root = Path(__file__).resolve().parents[2]
    shared = root.parent / "shared" / "PROTOCOL.md"
    if not shared.is_file():
        pytest.skip("no ../shared/PROTOCOL.md beside this checkout")
    spec, doc = shared.read_text(), (root / "docs" / "protocol.md").read_text()

    def between(text: str, start: str, end: str) -> str:
        return text[text.index(start) : text.index(end, text.index(start))]

    assert between(doc, "## 1. Transport", "## 11.") == between(spec, "## 1. Transport", "## Revisions")
    assert spec[spec.index("## Revisions") :].strip() in doc
