"""`make run`'s choice of Redis (scripts/run.py), with real redis-servers."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import run  # noqa: E402  (scripts/run.py)
from local_redis import free_port  # noqa: E402

pytestmark = pytest.mark.integration


def test_a_set_redis_url_that_answers_is_used(redis_url):
    assert run.choose_redis({"REDIS_URL": redis_url}) == redis_url


def test_a_set_redis_url_that_does_not_answer_stops_with_a_message():
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(SystemExit, match="does not answer"):
        run.choose_redis({"REDIS_URL": url})


def test_the_local_redis_is_used_when_it_answers(redis_url):
    assert run.choose_redis({}, default=redis_url) == redis_url


def stop(private_dir: Path) -> None:
    os.kill(int((private_dir / "redis.pid").read_text()), signal.SIGTERM)


def test_otherwise_a_private_redis_server_runs_on_and_keeps_its_data(tmp_path):
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    url = run.choose_redis({}, default=nobody, private_dir=tmp_path)
    try:
        assert url != nobody
        redis.Redis.from_url(url).set("rt:test", "kept")
        # The next `make run` finds the same server running: same history, same epochs (run_id).
        run_id = redis.Redis.from_url(url).info("server")["run_id"]
        assert run.choose_redis({}, default=nobody, private_dir=tmp_path) == url
        assert redis.Redis.from_url(url).info("server")["run_id"] == run_id
    finally:
        stop(tmp_path)
    # Stopped (a reboot, `make stop-redis`): the next one starts it again from its append-only file.
    url = run.choose_redis({}, default=nobody, private_dir=tmp_path)
    try:
        assert redis.Redis.from_url(url).get("rt:test") == b"kept"
    finally:
        stop(tmp_path)


def test_the_recorded_redis_outlives_the_server(tmp_path, redis_url, monkeypatch):
    # `manage.py publish` after Ctrl-C (or from a second `make run` that failed) still finds the Redis
    # `make run` serves with: the publication waits in its history, and the next start recovers it.
    monkeypatch.setattr(run, "URL_FILE", tmp_path / ".run" / "redis-url")
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert run.main(["not-an-address"]) != 0  # a real runserver, refusing the address at once
    assert run.URL_FILE.read_text().strip() == redis_url


def test_serving_without_redis_forgets_an_earlier_one(tmp_path):
    url_file = tmp_path / ".run" / "redis-url"
    run.record_redis("redis://127.0.0.1:6379/0", url_file)
    assert url_file.read_text() == "redis://127.0.0.1:6379/0\n"
    run.record_redis("", url_file)  # in memory this time: `manage.py publish` must not reach an unserved Redis
    assert not url_file.exists()


def test_an_address_in_use_stops_with_a_message_instead_of_hanging(capsys):
    # runserver itself logs "Listen failure" and then serves nothing, for ever: a second `make run`.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        assert run.main([address]) == 1
    assert f"{address} is in use" in capsys.readouterr().err
