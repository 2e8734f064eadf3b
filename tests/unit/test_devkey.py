"""The development key serves loopback only: bind addresses from each server's command line, and the guard."""

import warnings

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from project import devkey

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "hosts"),
    [
        (["manage.py", "runserver"], ["127.0.0.1"]),
        (["manage.py", "runserver", "8000"], ["127.0.0.1"]),
        (["manage.py", "runserver", "0:8000"], ["0.0.0.0"]),
        (["manage.py", "runserver", "0.0.0.0:8000"], ["0.0.0.0"]),
        (["manage.py", "runserver", "[::1]:8000", "--noreload"], ["::1"]),
        (["/venv/bin/daphne", "project.asgi:application"], ["127.0.0.1"]),
        (["/venv/bin/daphne", "-b", "0.0.0.0", "-p", "80", "project.asgi:application"], ["0.0.0.0"]),
        (["/venv/bin/daphne", "--bind=10.1.2.3", "project.asgi:application"], ["10.1.2.3"]),
        (["/venv/bin/daphne", "-e", "tcp:port=80:interface=192.168.1.2", "x:app"], ["192.168.1.2"]),
        (["/venv/bin/daphne", "-e", "tcp:port=80", "x:app"], ["0.0.0.0"]),  # Twisted's default: every interface
        (["/lib/uvicorn/__main__.py", "project.asgi:application"], ["127.0.0.1"]),
        (["/lib/uvicorn/__main__.py", "--host", "0.0.0.0", "project.asgi:application"], ["0.0.0.0"]),
        (["/venv/bin/uvicorn", "--host=127.0.0.2", "project.asgi:application"], ["127.0.0.2"]),
        (["/venv/bin/hypercorn", "project.asgi:application"], []),  # unknown: the connection guard decides
    ],
)
def test_bind_hosts_from_each_servers_command_line(argv, hosts):
    assert devkey.bind_hosts(argv) == hosts


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.com", False)],
)  # fmt: skip
def test_loopback(host, loopback):
    assert devkey.is_loopback(host) is loopback


@override_settings(DEVELOPMENT_KEY=True, DEVELOPMENT_KEY_FILE="/checkout/.dev-secret-key")
def test_the_development_key_refuses_a_public_bind_and_allows_loopback(caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said as a log line: a warning would print a line of source code too
        devkey.check_serving(["/venv/bin/daphne", "-b", "127.0.0.1", "project.asgi:application"])
    (record,) = [r for r in caplog.records if r.name == "project.devkey"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        "SECRET_KEY is not set: serving with this checkout's development key (/checkout/.dev-secret-key); "
        "loopback only."
    )
    with pytest.raises(ImproperlyConfigured, match="development key .* 0.0.0.0"):
        devkey.check_serving(["/venv/bin/daphne", "-b", "0.0.0.0", "project.asgi:application"])


@override_settings(DEVELOPMENT_KEY=False)
def test_a_configured_key_serves_anywhere():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and says nothing about a development key
        devkey.check_serving(["/venv/bin/daphne", "-b", "0.0.0.0", "project.asgi:application"])


class Recorder:
    def __init__(self):
        self.sent = []
        self.called = False

    async def app(self, scope, receive, send):
        self.called = True

    async def send(self, message):
        self.sent.append(message)


async def receive():
    return {"type": "websocket.connect"}


@pytest.mark.parametrize(("key", "host", "served"), [
    (True, "127.0.0.1", True), (True, "10.0.0.7", False), (True, "testserver", True), (False, "10.0.0.7", True),
])  # fmt: skip
@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_the_guard_refuses_connections_on_public_addresses_with_the_development_key(key, host, served, kind):
    recorder = Recorder()
    guard = devkey.DevelopmentKeyGuard(recorder.app)
    with override_settings(DEVELOPMENT_KEY=key):
        await guard({"type": kind, "server": (host, 8000)}, receive, recorder.send)
    assert recorder.called is served
    if not served:
        first = recorder.sent[0]
        assert first["type"] == ("websocket.close" if kind == "websocket" else "http.response.start")
        assert first.get("status", 503) == 503
