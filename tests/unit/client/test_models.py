"""Value types and helpers with no I/O: publications, JWT expiry, argument checks."""

import base64
import json

import pytest
from realtime_client import Client, Position, Publication, jwt_expiry

pytestmark = pytest.mark.unit


def make_jwt(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part(claims)}.signature"


def test_recovered_flag_is_not_part_of_equality():
    live = Publication("room:a", "e1", 4, {"x": 1}, 7, 1000)
    replayed = Publication("room:a", "e1", 4, {"x": 1}, 7, 1000, recovered=True)
    assert live == replayed
    assert replayed.recovered and not live.recovered
    assert live.position == Position("e1", 4)
    assert live.to_json() == {"channel": "room:a", "epoch": "e1", "offset": 4, "data": {"x": 1}, "user": 7, "ts": 1000}


def test_publication_from_a_replayed_frame_takes_the_channel_given():
    frame = {"epoch": "e1", "offset": 2, "data": None, "user": None, "ts": 5}
    assert Publication.from_frame(frame, "room:b", recovered=True).channel == "room:b"


def test_jwt_expiry_reads_exp_without_verifying():
    assert jwt_expiry(make_jwt({"exp": 1767225600, "user_id": 7})) == 1767225600.0
    assert jwt_expiry(make_jwt({"user_id": 7})) is None
    assert jwt_expiry(make_jwt({"exp": "soon"})) is None
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None


def test_client_rejects_bad_arguments():
    with pytest.raises(ValueError):
        Client([], token="t")
    with pytest.raises(TypeError):
        Client("ws://x/ws/", token="")
    with pytest.raises(TypeError):
        Client("ws://x/ws/", token=42)
    client = Client("ws://x/ws/", token="t")
    with pytest.raises(ValueError):
        client.subscribe("no-namespace")
    with pytest.raises(ValueError):
        client.on("nope", print)
