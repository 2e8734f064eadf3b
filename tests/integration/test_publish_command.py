"""`python manage.py publish <channel> <json-data>`: publish as the server from a shell."""

from __future__ import annotations

import io
import re
import socket

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import override_settings

from realtime.engine import get_engine, reset_engines
from tests.conftest import make_tokens

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

OUTPUT = re.compile(r"^published to (?P<channel>\S+) at (?P<epoch>\S+):(?P<offset>\d+)$")


def run(*args: str) -> tuple[str, str]:
    """Run the command; return its (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("publish", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


def stored(channel: str) -> list[str]:
    """The publication texts the engine keeps for `channel`, oldest first."""

    async def latest():
        return (await get_engine().latest(channel, 100, ttl=3600)).publications

    return async_to_sync(latest)()


def test_publishes_json_and_prints_the_position(engine):
    out, _ = run("public:lobby", '{"text": "hi", "n": [1, 2]}')
    match = OUTPUT.match(out)
    assert match and match["channel"] == "public:lobby" and match["offset"] == "1"
    out, _ = run("public:lobby", "2.5")
    assert OUTPUT.match(out)["offset"] == "2" and OUTPUT.match(out)["epoch"] == match["epoch"]
    [first, second] = stored("public:lobby")
    assert '"data":{"text":"hi","n":[1,2]},"user":null' in first
    assert '"data":2.5,"user":null' in second


def test_text_sends_a_plain_string(engine):
    run("public:lobby", "not json {", "--text")
    [text] = stored("public:lobby")
    assert '"data":"not json {"' in text


@pytest.mark.parametrize("data", ["{not json", "", "NaN", "Infinity", "1e400", "[" * 100_000])
def test_data_that_is_not_json_is_an_error(data):
    with pytest.raises(CommandError, match="not JSON"):
        run("public:lobby", data)


@pytest.mark.parametrize("channel", ["lobby", "public:", "public:a b", "Public:x"])
def test_bad_channel_is_an_error(channel):
    with pytest.raises(CommandError, match="bad_request"):
        run(channel, "1")


def test_unknown_namespace_is_an_error():
    with pytest.raises(CommandError, match="unknown_namespace"):
        run("nope:x", "1")


@override_settings(REALTIME={"MAX_FRAME_BYTES": 64})
def test_data_over_max_frame_bytes_is_an_error():
    reset_engines()
    with pytest.raises(CommandError, match="too_large"):
        run("public:lobby", "x" * 100, "--text")
    assert stored("public:lobby") == []


@pytest.fixture(autouse=True)
def _warn_afresh(monkeypatch):
    """The warning is said once per process: each test is a fresh process here."""
    from realtime import publish

    monkeypatch.setattr(publish, "_warned", False)


def test_publish_sync_outside_a_server_without_redis_warns_once(caplog):
    from realtime.publish import publish_sync

    reset_engines()
    publish_sync("public:lobby", {"n": 1})
    publish_sync("public:lobby", {"n": 2})
    warnings = [r for r in caplog.records if "reach no socket" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


def test_warns_when_redis_url_is_unset():
    _, err = run("public:lobby", "1")
    assert "REDIS_URL is not set" in err


def test_no_warning_with_redis(engine):
    _, err = run("public:lobby", "1")
    assert ("REDIS_URL is not set" in err) == (engine == "memory")


def test_unreachable_redis_is_an_error(redis_prefix):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reset_engines()
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0", REDIS_PREFIX=redis_prefix):
        with pytest.raises(CommandError, match="unavailable"):
            run("public:lobby", "1")
    reset_engines()


@pytest.mark.django_db(transaction=True)
async def test_publication_reaches_a_subscribed_socket(connect, user, redis_layer, redis_prefix):
    reset_engines()
    with override_settings(REDIS_URL=redis_layer, REDIS_PREFIX=redis_prefix):
        access, _ = await sync_to_async(make_tokens)(user)
        sock = await connect(token=access)
        await sock.recv_type("welcome")
        assert (await sock.request({"type": "subscribe", "channel": "public:x", "id": 1}))["type"] == "subscribed"
        out, _ = await sync_to_async(run)("public:x", '{"from": "shell"}')
        message = await sock.recv_type("message")
    reset_engines()
    await sync_to_async(connections.close_all)()
    assert (message["data"], message["user"], message["offset"]) == ({"from": "shell"}, None, 1)
    assert out == f"published to public:x at {message['epoch']}:1"
