"""`python manage.py publish <channel> <json-data>`: publish as the server from a shell.

In-process through `call_command`, and as a real `manage.py` process finding the Redis that
`make run` recorded (`.run/redis-url`, scripts/run.py) in the checkout of a copy of manage.py.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import CommandError, call_command
from django.db import connections

from realtime.engine import get_engine
from tests.conftest import make_tokens, override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
with_redis = pytest.mark.parametrize("engine", ["redis"], indirect=True)  # publishing needs the servers' Redis

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


@with_redis
def test_publishes_json_and_prints_the_position(engine):
    out, _ = run("public:lobby", '{"text": "hi", "n": [1, 2]}')
    match = OUTPUT.match(out)
    assert match and match["channel"] == "public:lobby" and match["offset"] == "1"
    out, _ = run("public:lobby", "2.5")
    assert OUTPUT.match(out)["offset"] == "2" and OUTPUT.match(out)["epoch"] == match["epoch"]
    [first, second] = stored("public:lobby")
    assert '"data":{"text":"hi","n":[1,2]},"user":null' in first
    assert '"data":2.5,"user":null' in second


@with_redis
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


@with_redis
@override_realtime({"MAX_FRAME_BYTES": 64})
def test_data_over_max_frame_bytes_is_an_error(engine):
    with pytest.raises(CommandError, match="too_large"):
        run("public:lobby", "x" * 100, "--text")
    assert stored("public:lobby") == []


def test_publish_sync_outside_a_server_without_redis_warns_once(caplog):
    from realtime.pubsub.publishing import publish_sync

    publish_sync("public:lobby", {"n": 1})
    publish_sync("public:lobby", {"n": 2})
    warnings = [r for r in caplog.records if "reach no socket" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


def test_without_redis_nothing_is_published_and_it_fails():
    # This process's in-memory engine: no server process could hear the publication.
    with pytest.raises(CommandError, match="No Redis") as failed:
        run("public:lobby", "1")
    assert "REDIS_URL" in str(failed.value) and "make run" in str(failed.value)
    assert stored("public:lobby") == []


@with_redis
def test_no_warning_with_redis(engine):
    _, err = run("public:lobby", "1")
    assert err == ""


def test_unreachable_redis_is_an_error(redis_prefix):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with override_realtime(REDIS_URL=f"redis://127.0.0.1:{port}/0", REDIS_PREFIX=redis_prefix):
        with pytest.raises(CommandError, match="unavailable"):
            run("public:lobby", "1")


@pytest.mark.django_db(transaction=True)
async def test_publication_reaches_a_subscribed_socket(connect, user, redis_layer, redis_prefix):
    with override_realtime(REDIS_URL=redis_layer, REDIS_PREFIX=redis_prefix):
        access, _ = await sync_to_async(make_tokens)(user)
        sock = await connect(token=access)
        await sock.recv_type("welcome")
        assert (await sock.request({"type": "subscribe", "channel": "public:x", "id": 1}))["type"] == "subscribed"
        out, _ = await sync_to_async(run)("public:x", '{"from": "shell"}')
        message = await sock.recv_type("message")
    await sync_to_async(connections.close_all)()
    assert (message["data"], message["user"], message["offset"]) == ({"from": "shell"}, None, 1)
    assert out == f"published to public:x at {message['epoch']}:1"


def manage_copy(tmp_path: Path) -> Path:
    """This manage.py in a checkout of its own (`tmp_path`: its `.run/` is the test's, not the work tree's)."""
    (tmp_path / ".run").mkdir(parents=True)
    shutil.copy(ROOT / "manage.py", tmp_path / "manage.py")
    return tmp_path / "manage.py"


def manage(script: Path, *args: str, prefix: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `script` as a user would, from `cwd`, without REDIS_URL (the project importable from ROOT)."""
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(REDIS_PREFIX=prefix, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def stored_in(url: str, prefix: str, channel: str) -> list[str]:
    """The publication texts of `channel` in the Redis at `url` under `prefix`."""
    with override_realtime(REDIS_URL=url, REDIS_PREFIX=prefix):
        return stored(channel)


def test_a_process_finds_the_redis_make_run_recorded(tmp_path, redis_url, redis_prefix):
    script = manage_copy(tmp_path / "checkout")
    (script.parent / ".run" / "redis-url").write_text(redis_url + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = manage(script, "publish", "public:x", '{"n": 1}', prefix=redis_prefix, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    [text] = stored_in(redis_url, redis_prefix, "public:x")
    assert OUTPUT.match(done.stdout.strip())["offset"] == "1" and '"data":{"n":1}' in text


def test_a_process_with_no_redis_fails_and_says_why(tmp_path, redis_prefix):
    # No REDIS_URL and no Redis recorded by `make run` (none found, or never run here).
    done = manage(manage_copy(tmp_path), "publish", "public:x", "1", prefix=redis_prefix, cwd=tmp_path)
    assert done.returncode != 0 and "published" not in done.stdout
    assert "No Redis" in done.stderr and "REDIS_URL" in done.stderr


def test_a_recorded_redis_that_does_not_answer_is_not_used(tmp_path, redis_prefix):
    # `make stop-redis`, or a reboot, stopped the private redis-server that `make run` recorded.
    script = manage_copy(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    (script.parent / ".run" / "redis-url").write_text(dead + "\n")
    done = manage(script, "publish", "public:x", "1", prefix=redis_prefix, cwd=tmp_path)
    assert done.returncode != 0 and "No Redis" in done.stderr
