"""The command line, in process (`cli.amain`) and as a real subprocess (Ctrl-C), against the fake server."""

import asyncio
import functools
import io
import json
import signal
import sys

import pytest
from realtime_client import ClientState as C
from realtime_client import StateChange, cli

from .conftest import roundtrip
from .fake_server import TIMEOUT, FakeHTTP

pytestmark = pytest.mark.unit


class Stream(io.StringIO):
    """A text stream a test can await lines on."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def write(self, text: str) -> int:
        self._changed.set()
        return super().write(text)

    @property
    def lines(self) -> list[str]:
        return self.getvalue().splitlines()

    async def line(self, needle: str, timeout: float = TIMEOUT) -> str:
        """The first line containing `needle` (waiting for it, bounded)."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                self._changed.clear()
                await self._changed.wait()


def test_api_base_from_the_socket_url():
    assert cli.api_base("ws://a:8000/ws/") == "http://a:8000"
    assert cli.api_base("wss://example.org/ws/?x=1") == "https://example.org"


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (StateChange(C.CONNECTED, C.CONNECTING, resumed=True), "state: connected (resumed)"),
        (StateChange(C.CONNECTED, C.CONNECTING, resumed=False), "state: connected (new session)"),
        (StateChange(C.DISCONNECTED, C.CONNECTED, 1006, delay=1.234),
         "state: disconnected (code 1006 abnormal) retry in 1.2 s"),
        (StateChange(C.CLOSED, C.CONNECTED, 4503, "forbidden"), "state: closed (code 4503 forbidden)"),
        (StateChange(C.CONNECTING, C.DISCONNECTED, url="ws://x/ws/"), "state: connecting to ws://x/ws/"),
        (StateChange(C.DISCONNECTED, C.CONNECTING, None, "token: boom", 0.5),
         "state: disconnected (token: boom) retry in 0.5 s"),
    ],
)  # fmt: skip
def test_state_lines(change, line):
    assert cli.describe_state(change) == line


async def test_listen_prints_publications_and_survives_a_restart(server):
    out, err = Stream(), Stream()
    argv = ["listen", "--url", server.url, "--token", "tok", "room:a", "public:lobby"]
    listening = asyncio.create_task(cli.amain(argv, stdout=out, stderr=err))
    conn = await server.accept()
    assert (await conn.welcome())["token"] == "tok"
    for _ in range(2):
        request = await conn.expect("subscribe")
        await conn.subscribed(request, "e1", 0)
    await conn.message("room:a", 1, {"text": "hi"})
    await out.line('"offset": 1')
    assert json.loads(out.lines[0]) == {
        "channel": "room:a", "epoch": "e1", "offset": 1, "data": {"text": "hi"}, "user": 7, "ts": 1001,
    }  # fmt: skip
    await conn.close(1001)  # a server restart
    await err.line("state: disconnected (code 1001 going_away) retry in")
    conn = await server.accept()
    await conn.welcome(resumed=True)
    await conn.send({"type": "subscribed", "channel": "room:a", "epoch": "e1", "offset": 2, "recovered": True,
                     "publications": [{"channel": "room:a", "epoch": "e1", "offset": 2, "data": 2, "user": None,
                                       "ts": 5}]})  # fmt: skip
    await out.line('"offset": 2')
    await err.line("state: connected (resumed)")
    await err.line("subscribed: room:a at e1:2 (recovered)")
    await conn.send({"type": "unsubscribed", "channel": "public:lobby", "reason": "removed"})
    await err.line("unsubscribed: public:lobby (removed)")
    await conn.close(4503, "forbidden")
    assert await asyncio.wait_for(listening, TIMEOUT) == 1
    assert "state: closed (code 4503 forbidden)" in err.lines
    assert len(out.lines) == 2


async def test_listen_with_a_password_login(server):
    routes = {"/api/auth/token/": (200, {"access": "a1", "refresh": "r1"})}
    async with FakeHTTP(routes) as http:
        out, err = Stream(), Stream()
        argv = ["listen", "--url", server.url, "--username", "ann", "--password", "pw", "--api", http.url, "room:a"]
        listening = asyncio.create_task(cli.amain(argv, stdout=out, stderr=err))
        conn = await server.accept()
        assert (await conn.welcome())["token"] == "a1"
        await conn.expect("subscribe")
        await conn.close(4500)
        assert await asyncio.wait_for(listening, TIMEOUT) == 1
    assert http.requests == [("/api/auth/token/", {"username": "ann", "password": "pw"})]


async def test_listen_stops_when_closed_before_connecting(server):
    err = Stream()
    listening = asyncio.create_task(cli.amain(["listen", "--url", server.url, "--token", "t", "room:a"], Stream(), err))
    conn = await server.accept()
    await conn.expect("auth")
    await conn.close(4501, "unauthorized")
    assert await asyncio.wait_for(listening, TIMEOUT) == 1
    assert "state: closed (code 4501 unauthorized)" in err.lines


async def test_publish_prints_the_position(server):
    out = Stream()
    publishing = asyncio.create_task(
        cli.amain(["publish", "--url", server.url, "--token", "t", "room:a", '{"text": "hi"}'], out, Stream())
    )
    conn = await server.accept()
    await conn.welcome()
    request = await conn.expect("publish")
    assert request["data"] == {"text": "hi"}
    await conn.reply(request, "published", channel="room:a", epoch="e1", offset=58)
    assert await asyncio.wait_for(publishing, TIMEOUT) == 0
    assert json.loads(out.getvalue()) == {"channel": "room:a", "epoch": "e1", "offset": 58}
    assert await conn.wait_closed() == 1000


async def test_publish_error_exits_1(server):
    err = Stream()
    publishing = asyncio.create_task(
        cli.amain(["publish", "--url", server.url, "--token", "t", "user:9", "1"], Stream(), err)
    )
    conn = await server.accept()
    await conn.welcome()
    await conn.reply(await conn.expect("publish"), "error", code="permission_denied", message="not yours")
    assert await asyncio.wait_for(publishing, TIMEOUT) == 1
    assert err.lines == ["error: permission_denied: not yours"]


async def test_publish_with_a_wrong_password_says_so(server):
    routes = {"/api/auth/token/": (401, {"code": "unauthorized", "message": "No active account"})}
    async with FakeHTTP(routes) as http:
        err = Stream()
        argv = ["publish", "--url", server.url, "--username", "ann", "--password", "bad", "--api", http.url]
        argv += ["room:a", "1"]
        assert await asyncio.wait_for(cli.amain(argv, Stream(), err), TIMEOUT) == 1
    assert err.lines[-1].startswith("error: unauthorized: POST /api/auth/token/: HTTP 401"), err.lines


async def test_publish_times_out_without_a_server():
    from .fake_server import refused_url

    err = Stream()
    argv = ["publish", "--url", refused_url(), "--token", "t", "--timeout", "0.05", "room:a", "1"]
    assert await cli.amain(argv, Stream(), err) == 1
    assert err.lines[-1].startswith("error: timeout")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["publish", "--url", "ws://x/ws/", "--token", "t", "room:a", "{nope"], "invalid JSON"),
        (["publish", "--url", "ws://x/ws/", "--username", "ann", "room:a", "1"], "--username needs --password"),
        (["listen", "--url", "ws://x/ws/", "room:a"], "one of the arguments --token --username is required"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "sigint-ignored"])
async def test_ctrl_c_exits_cleanly(server, inherited):
    """A real process: SIGINT ends `listen` with status 130, a clean close and no traceback; also when
    it was started with SIGINT ignored (`cmd &` in a script, nohup, a background `make test`), which
    an exec keeps."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "realtime_client", "listen", "--url", server.url, "--token", "t", "room:a",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, inherited),  # whatever this process has
    )  # fmt: skip
    try:
        conn = await server.accept(timeout=20)
        await conn.welcome()
        await conn.subscribed(await conn.expect("subscribe"), "e1", 0)
        await conn.message("room:a", 1, "x")
        async with asyncio.timeout(TIMEOUT):
            line = await process.stdout.readline()
        assert json.loads(line)["data"] == "x"
        await roundtrip(conn)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            _, stderr = await process.communicate()
        assert process.returncode == 130
        assert b"Traceback" not in stderr and b"state: connected (new session)" in stderr
        assert await conn.wait_closed() == 1000
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
