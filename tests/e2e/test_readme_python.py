"""The README's Python client section, run as written against a real server with the demo data
(`manage.py demo_data`, as `make run` creates it): only the port is changed. The snippet must see
its own `connected` state, publish and receive, and end quietly on Ctrl-C with a clean close (1000);
the shell's `listen` prints what its `publish` sends, and ends on Ctrl-C with 130 and no traceback."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shlex
import signal
import sys

from asgiref.sync import sync_to_async
from django.core.management import call_command

from realtime.models import Connection

from .rows import poll_queryset
from .servers import ROOT

WAIT = 30.0  # a bound on waiting for the snippet (a cold interpreter imports the client), never a measurement
README_ADDRESS = "127.0.0.1:8000"


def readme_block(heading: str, language: str) -> str:
    """The first ```<language> block after `heading` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def readme_commands(heading: str) -> list[list[str]]:
    """The shell commands of the first ```sh block after `heading`, each as its argv."""
    block = readme_block(heading, "sh").replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def start(argv: list[str], env: dict[str, str]):
    """A process as a terminal starts it (SIGINT at its default), in the checkout, with pipes."""
    return asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


async def interrupt(process) -> tuple[bytes, bytes]:
    """Ctrl-C, then everything it printed; killed if it does not end."""
    try:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            return await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> str:
    """Lines of `stream` into `seen` until one contains `needle`; returns it."""
    async with asyncio.timeout(WAIT):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"the snippet ended before printing {needle!r}; it printed {seen}"
            seen.append(line.rstrip("\n"))
            if needle in line:
                return line


async def test_the_readme_python_client_section_runs_as_written(servers):
    (server,) = await servers(1)
    await sync_to_async(call_command)("demo_data", stdout=open(os.devnull, "w"))  # noqa: SIM115
    here = f"127.0.0.1:{server.port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"}

    snippet = readme_block("### The Python client", "python")
    assert snippet.count(README_ADDRESS) == 2, snippet  # the HTTP API and the socket, nothing else changed
    process = await start([sys.executable, "-c", snippet.replace(README_ADDRESS, here)], env)
    try:
        seen: list[str] = []
        published = await read_until(process.stdout, "Published(", seen)
        offset = re.search(r"offset=(\d+)", published).group(1)
        await read_until(process.stdout, f"{offset} {{'text': 'hi'}}", seen)  # its own publication, received
        assert "state: connected" in seen, seen  # the listener was there before the connection
    finally:
        stdout, stderr = await interrupt(process)
    assert process.returncode == 0 and stderr == b"", stderr.decode()  # quiet: no traceback
    assert "state: closed" in stdout.decode()
    alice = Connection.objects.filter(user__username="alice")
    [row] = await poll_queryset(lambda rows: len(rows) == 1 and rows[0].closed_at is not None, alice)
    assert row.close_code == 1000  # the client closed it on the way out

    listen, publish = readme_commands("### The Python client")
    assert (listen[3], publish[3]) == ("listen", "publish"), (listen, publish)
    listen, publish = ([arg.replace(README_ADDRESS, here) for arg in argv] for argv in (listen, publish))
    listening = await start(listen, env)
    try:
        seen = []
        await read_until(listening.stderr, "subscribed: room:kitchen", seen)
        publishing = await start(publish, env)
        async with asyncio.timeout(WAIT):
            out, err = await publishing.communicate()
        assert publishing.returncode == 0, err.decode()
        position = json.loads(out)
        line = await read_until(listening.stdout, '"dinner!"', [])
        assert json.loads(line)["offset"] == position["offset"]
    finally:
        _, stderr = await interrupt(listening)
    assert listening.returncode == 130 and b"Traceback" not in stderr, stderr.decode()
