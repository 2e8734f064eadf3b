"""`manage.py runserver` as `make run` serves it (daphne's, under Django's autoreloader): Ctrl-C
says goodbye to every socket and closes its row, each request is logged once, and each socket
gets one log line when it opens, authenticates and closes."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys

import pytest

from .client import Client
from .rows import poll_rows
from .servers import HOST, ROOT, free_port, http_get

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

READY_LIMIT = 60.0  # a bound on waiting (two processes import Django), never a measurement


async def wait_listening(port: int, process: subprocess.Popen, log) -> None:
    deadline = asyncio.get_running_loop().time() + READY_LIMIT
    while True:
        try:
            status, _ = await http_get(HOST, port, "/healthz", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        if process.poll() is not None or asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"runserver did not come up:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.1)


@pytest.fixture
def runserver(server_base_env, tmp_path):
    """Start `manage.py runserver` with the autoreloader, in its own process group (as a terminal
    runs it: Ctrl-C reaches the reloader and its child at once)."""
    started = []

    def start(sigint=signal.SIG_DFL) -> tuple[subprocess.Popen, int, object]:
        """`sigint`: the SIGINT disposition it inherits (set here, not taken from however pytest was started)."""
        port, log = free_port(), tmp_path / "runserver.log"
        env = {**server_base_env, "DEBUG": "1"}  # as under `make run`: Django's console logging is on
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"{HOST}:{port}"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=functools.partial(signal.signal, signal.SIGINT, sigint),
        )  # fmt: skip
        started.append(process)
        return process, port, log

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "sigint-ignored"])
async def test_ctrl_c_on_runserver_says_going_away_and_closes_the_rows(runserver, new_user, tokens, sigint):
    """Also when started with SIGINT ignored (a background `make run`, nohup): realtime.server.devserver installs
    the child's handler itself rather than relying on the inherited disposition."""
    user = await new_user("ann")
    access, _ = await tokens(user)
    process, port, log = runserver(sigint)
    await wait_listening(port, process, log)
    client = await Client.authenticated(f"ws://{HOST}:{port}/ws/", access)
    session = client.welcome["session"]
    await poll_rows(lambda rows: rows[0].is_open, [session])
    assert (await http_get(HOST, port, "/healthz"))[0] == 200

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does

    await client.expect_disconnect(1001, "going_away")
    await client.expect_closed(1001)
    assert await asyncio.to_thread(process.wait, 30) == 0
    [row] = await poll_rows(lambda rows: not rows[0].is_open, [session])
    # Closed by the consumer's own goodbye, or by the node's shutdown if it came first: 1001 either way.
    assert row.close_code == 1001 and row.close_reason in ("going_away", "shutdown")
    text = log.read_text()
    # Each record once, with its timestamp: not again bare from Django's own console handler.
    bare = [line for line in text.splitlines() if line.startswith(("HTTP GET", "WebSocket ", "Watching for"))]
    assert not bare, f"records printed twice: {bare}"
    assert "django.channels.server HTTP GET /healthz 200" in text
    assert f"socket open session={session} client=127.0.0.1:" in text
    assert f"socket auth session={session} user={user.pk} method=header resumed=no" in text
    assert f"socket close session={session} user={user.pk} code=1001 reason=going_away by=server" in text
