"""The app adopted by a project that is not this repository, exactly as docs/integration.md says.

The wheel is built from the checkout and installed, offline from `.venv/wheelhouse` (`make
install` fills it), into a fresh virtualenv of its own; everything then runs in a temporary
directory, so nothing of the checkout (`accounts`, `project`) is importable. `django-admin
startproject mysite` and `startapp people` make the project, and every file of it comes from
the guide's code blocks marked `<!-- file: PATH -->` (`, append` adds to the generated one),
so the guide cannot drift from what runs. The harness adds only this suite's Redis and a key
prefix of its own to the settings, a signal receiver that raises on purpose, and one that
announces each socket's end (so that the test awaits it rather than polling a file).

The project is served by the guide's own commands (uvicorn, then daphne) on free ports and
driven over real sockets as docs/protocol.md says: tokens from the token API and from
simplejwt directly, publications from another process, model changes published on commit
(and not on a rollback), recovery by offset, a namespace rule that uses the ORM, logout,
the socket signals, and a graceful stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed

from tests.unit.test_packaging import build_wheel

from .client import Client
from .servers import HOST, READY_TIMEOUT, DaphneServer, is_problem, log_records

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # a virtualenv and a project to build first

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "integration.md"
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
PASSWORD = "correct-horse-battery"
PEOPLE = ("ann", "bob", "cleo", "dora")  # ann is in the team `red`; cleo logs out; dora is daphne's
STEP_TIMEOUT = 300  # seconds for one command (an install, a migration): a bound, never a measurement

FILE_BLOCK = re.compile(
    r"^<!-- file: (?P<path>[^,>]+?)(?P<append>, append)? -->\n```\w*\n(?P<code>.*?)^```", re.M | re.S
)
COMMAND_BLOCK = re.compile(r"^<!-- command: (?P<name>\w+) -->\n```\w*\n(?P<code>.*?)^```", re.M | re.S)

# What the harness adds to the guide's project (and nothing else).
HARNESS_SETTINGS = """
# tests/e2e/test_fresh_project.py: this suite's Redis, under a key prefix of this run's own.
REALTIME["REDIS_URL"] = {url!r}
REALTIME["REDIS_PREFIX"] = {prefix!r}
"""
HARNESS_RECEIVERS = """

# tests/e2e/test_fresh_project.py: a receiver that raises, which must harm neither the socket nor the others.
@receiver(channel_subscribed)
def fails_on_purpose(sender, **kwargs):
    raise RuntimeError("a receiver that fails on purpose")


# tests/e2e/test_fresh_project.py: plain receivers run one after another in the order they were
# connected, so once this one publishes, the audit trail's `disconnected` line is written.
@receiver(socket_disconnected)
def announce_disconnect(sender, session, **kwargs):
    from realtime.publish import publish_sync

    publish_sync("public:disconnects", {"session": session})
"""
FAILURE = "a receiver that fails on purpose"
WITHOUT_CHANNELS = """from .settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "channels"]  # noqa: F405
"""


def guide_files() -> list[tuple[str, bool, str]]:
    """The guide's project files, in order: (path in the project, whether appended, code)."""
    blocks = [(m["path"].strip(), bool(m["append"]), m["code"]) for m in FILE_BLOCK.finditer(GUIDE.read_text())]
    assert blocks, f"no <!-- file: ... --> blocks in {GUIDE}"
    return blocks


def guide_command(name: str) -> list[str]:
    """The guide's command line to serve the project with `name` (uvicorn, daphne)."""
    found = [m["code"] for m in COMMAND_BLOCK.finditer(GUIDE.read_text()) if m["name"] == name]
    assert len(found) == 1, f"{GUIDE} has {len(found)} <!-- command: {name} --> blocks"
    return shlex.split(found[0])


@dataclass
class Site:
    """The fresh project: its virtualenv, its directory (where manage.py is) and its environment."""

    venv: Path
    root: Path
    env: dict[str, str]
    people: dict[str, str] = field(default_factory=dict)  # username -> member_id

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command of the virtualenv (`python`, `pip`, `django-admin`) in the project directory."""
        program = self.venv / "bin" / command[0]
        result = subprocess.run(
            [str(program), *command[1:]], cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=STEP_TIMEOUT,
        )  # fmt: skip
        if check and result.returncode != 0:
            pytest.fail(f"`{shlex.join(command)}` exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def manage(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("python", "manage.py", *arguments, check=check)

    def shell(self, code: str) -> str:
        """Run `code` in `manage.py shell -c` (another process); returns the last line it printed."""
        lines = self.manage("shell", "-c", code).stdout.strip().splitlines()
        return lines[-1] if lines else ""

    async def ashell(self, code: str) -> str:
        """`shell` without blocking the event loop (the test's sockets keep reading)."""
        return await asyncio.to_thread(self.shell, code)

    def access_token(self, username: str) -> str:
        """An access token minted by simplejwt itself, as a project issuing its own tokens does."""
        return self.shell(
            "from rest_framework_simplejwt.tokens import AccessToken\n"
            "from django.contrib.auth import get_user_model\n"
            f"print(AccessToken.for_user(get_user_model().objects.get(username={username!r})))"
        )


class FreshServer(DaphneServer):
    """The fresh project served by the guide's command (`uvicorn` or `daphne`) from its virtualenv."""

    READY_PATH = "/admin/login/"  # the project's plain Django, through the app's router (it has no /healthz)

    def __init__(self, site: Site, kind: str, log_path: Path) -> None:
        super().__init__(site.env, log_path, name=kind)
        self.kind = kind
        self.workdir = site.root
        program, *arguments = guide_command(kind)
        self.argv = [str(site.venv / "bin" / program), *arguments]

    def command(self) -> list[str]:
        bind = ["-b", HOST, "-p"] if self.kind == "daphne" else ["--host", HOST, "--port"]
        return [*self.argv, *bind, str(self.port)]

    def unexpected_problems(self) -> list[str]:
        """Log records of unhandled errors, but for the receiver that fails on purpose."""
        return [r for r in log_records(self.log_text()) if is_problem(r) and FAILURE not in r]


def clean_env(venv: Path, home: Path) -> dict[str, str]:
    """An environment with nothing of this test process: no DJANGO_SETTINGS_MODULE, no PYTHONPATH,
    no REALTIME_* and no pip configuration (no index either: installs come from the wheelhouse)."""
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "VIRTUAL_ENV": str(venv),
        "PYTHONUNBUFFERED": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


# ---------------------------------------------------------------- the project, step by step


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory) -> Site:
    """A fresh virtualenv with `<wheel>[uvicorn]`, installed from the wheelhouse alone."""
    if not (WHEELHOUSE / ".complete").is_file():
        pytest.fail(f"no wheelhouse at {WHEELHOUSE}: `make install` fills it (pip wheel -r requirements.txt)")
    base = tmp_path_factory.mktemp("fresh")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=STEP_TIMEOUT)
    site_dir = base / "site"
    site_dir.mkdir()
    site = Site(venv=venv, root=site_dir, env=clean_env(venv, base))
    site.run("python", "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE),
             f"{wheel}[uvicorn]")  # fmt: skip
    return site


@pytest.fixture(scope="module")
def redis_isolation() -> Iterator[tuple[str, str]]:
    """(the suite's Redis URL, a key prefix of this module's own), every key under it deleted afterwards."""
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.fail("TEST_REDIS_URL is not set: run the suite with `make test` (it provides Redis).")
    prefix = f"test-fresh-{uuid.uuid4().hex[:10]}"
    yield url, prefix
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def project(venv: Site, redis_isolation: tuple[str, str]) -> Site:
    """`startproject mysite` and `startapp people`, then the guide's files, then the harness's additions."""
    venv.run("django-admin", "startproject", "mysite")
    site = Site(venv=venv.venv, root=venv.root / "mysite", env=venv.env)
    site.manage("startapp", "people")
    for path, append, code in guide_files():
        target = site.root / path
        assert target.exists() or not append, f"the guide appends to {path}, which the generated project lacks"
        with open(target, "a" if append else "w") as file:
            file.write(("\n" if append else "") + code)
    url, prefix = redis_isolation
    with open(site.root / "mysite" / "settings.py", "a") as settings:
        settings.write(HARNESS_SETTINGS.format(url=url, prefix=prefix))
    with open(site.root / "people" / "receivers.py", "a") as receivers:
        receivers.write(HARNESS_RECEIVERS)
    (site.root / "mysite" / "settings_without_channels.py").write_text(WITHOUT_CHANNELS)
    return site


@pytest.fixture(scope="module")
def site(project: Site) -> Site:
    """The project migrated, with its people: ann (a member of the team red), bob, cleo and dora."""
    project.manage("makemigrations", "people")
    project.manage("migrate", "--noinput")
    created = project.shell(
        "import json\n"
        "from people.models import Membership, Person, Team\n"
        f"people = {{name: Person.objects.create_user(name, password={PASSWORD!r}) for name in {PEOPLE!r}}}\n"
        "Membership.objects.create(team=Team.objects.create(name='red'), person=people['ann'])\n"
        "print(json.dumps({name: str(person.pk) for name, person in people.items()}))"
    )
    project.people = json.loads(created)
    return project


@pytest.fixture(scope="module")
def server(site: Site, tmp_path_factory) -> Iterator[FreshServer]:
    """The project under the guide's uvicorn command; its log is checked for unhandled errors at the end."""
    served = FreshServer(site, "realtime", tmp_path_factory.mktemp("logs") / "realtime.log").start()
    try:
        asyncio.run(served.wait_ready())
        yield served
    finally:
        served.terminate()
    problems = served.unexpected_problems()
    assert not problems, "the server logged an unhandled error:\n" + "\n".join(problems[:5])


@pytest.fixture
def sockets() -> Callable[..., Any]:
    """`async with sockets(server, token) as client:` a socket that got `welcome`; closed at the end."""

    @asynccontextmanager
    async def open_socket(served: FreshServer, token: str) -> AsyncIterator[Client]:
        client = await Client.authenticated(served.ws_url, token)
        try:
            yield client
        finally:
            await client.close()

    return open_socket


async def next_message(client: Client, wanted: Callable[[Any], bool]) -> dict[str, Any]:
    """The next `message` whose data is `wanted`, skipping presence pushes and other messages."""
    while True:
        frame = await client.recv()
        if frame["type"] == "message" and wanted(frame["data"]):
            return frame
        assert frame["type"] in ("ping", "join", "leave", "message"), frame


async def obtain_tokens(served: FreshServer, username: str) -> dict[str, str]:
    """A token pair from the token API (`POST /api/auth/token/`)."""
    async with httpx.AsyncClient(base_url=served.url, trust_env=False) as http:
        response = await http.post("/api/auth/token/", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------- installing and checking


def test_the_virtualenv_has_the_wheel_and_nothing_of_the_checkout(venv: Site):
    assert venv.run("python", "-m", "pip", "check").returncode == 0
    located = venv.run("python", "-c", "import realtime; print(realtime.__file__)").stdout.strip()
    assert Path(located).is_relative_to(venv.venv) and "site-packages" in Path(located).parts, located
    for name in ("accounts", "project"):
        attempt = venv.run("python", "-c", f"import {name}", check=False)
        assert attempt.returncode != 0 and "ModuleNotFoundError" in attempt.stderr, (name, attempt.stderr)


def test_check_is_clean(site: Site):
    result = site.manage("check")
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_names_a_missing_app_and_says_what_to_write(project: Site):
    result = project.manage("check", "--settings", "mysite.settings_without_channels", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert re.search(r"realtime\.E001.*channels", output, re.S), output


def test_the_projects_own_tests_pass_with_the_testing_helpers(site: Site):
    """The guide's people/tests.py, on `realtime.testing`, run by `manage.py test`."""
    result = site.manage("test", "people", "--noinput", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Ran 2 tests", result.stderr), result.stderr


# ---------------------------------------------------------------- served by uvicorn


async def test_a_token_of_the_api_and_one_minted_by_simplejwt_both_open_sockets(server, site, sockets):
    ann = site.people["ann"]
    tokens = await obtain_tokens(server, "ann")
    minted = await asyncio.to_thread(site.access_token, "ann")
    for token in (tokens["access"], minted):
        async with sockets(server, token) as client:
            assert str(client.welcome["user"]["id"]) == ann, client.welcome
            assert client.welcome["user"]["username"] == "ann"


async def test_a_publication_from_another_process_arrives(server, site, sockets):
    channel = f"user:{site.people['ann']}"
    async with sockets(server, (await obtain_tokens(server, "ann"))["access"]) as client:
        subscribed = await client.request({"type": "subscribe", "id": 1, "channel": channel})
        assert subscribed["type"] == "subscribed", subscribed
        offset = await site.ashell(
            f"from realtime.publish import publish_sync\nprint(publish_sync({channel!r}, {{'unread': 3}}).offset)"
        )
        message = await client.recv_type("message")
        assert (message["channel"], message["data"], message["user"]) == (channel, {"unread": 3}, None), message
        assert message["offset"] == int(offset) == subscribed["offset"] + 1


async def test_a_note_is_published_once_when_its_transaction_commits_and_never_on_a_rollback(server, site, sockets):
    ann = site.people["ann"]
    channel = f"user:{ann}"
    async with sockets(server, await asyncio.to_thread(site.access_token, "ann")) as client:
        subscribed = await client.request({"type": "subscribe", "id": 1, "channel": channel})
        assert subscribed["type"] == "subscribed", subscribed
        kept = await site.ashell(
            "from django.db import transaction\n"
            "from people.models import Note, Person\n"
            "from realtime.publish import publish_sync\n"
            f"owner = Person.objects.get(pk={ann!r})\n"
            "with transaction.atomic():\n"
            "    kept = Note.objects.create(owner=owner, text='kept')\n"
            "try:\n"
            "    with transaction.atomic():\n"
            "        Note.objects.create(owner=owner, text='rolled back')\n"
            "        raise RuntimeError('roll back')\n"
            "except RuntimeError:\n"
            "    pass\n"
            f"publish_sync({channel!r}, {{'sentinel': True}})\n"
            "print(kept.pk)"
        )
        created = await client.recv_type("message")
        change = created["data"]
        assert (change["event"], change["model"], change["pk"]) == ("created", "people.note", int(kept)), change
        assert change["data"]["text"] == "kept" and ann in (change["data"].get("owner"), change["data"].get("owner_id"))
        # The next publication is the sentinel: neither a second `created` nor the rolled-back note came before it.
        sentinel = await client.recv_type("message")
        assert sentinel["data"] == {"sentinel": True}, sentinel
        assert sentinel["offset"] == created["offset"] + 1 == subscribed["offset"] + 2


async def test_an_update_made_while_away_is_recovered_by_offset(server, site, sockets):
    ann = site.people["ann"]
    channel = f"user:{ann}"
    token = await asyncio.to_thread(site.access_token, "ann")
    async with sockets(server, token) as first:
        subscribed = await first.request({"type": "subscribe", "id": 1, "channel": channel})
        position = {"epoch": subscribed["epoch"], "offset": subscribed["offset"]}
    note = await site.ashell(
        "from people.models import Note\n"
        f"note = Note.objects.create(owner_id={ann!r}, text='draft')\n"
        "note.text = 'edited'\n"
        "note.save()\n"
        "print(note.pk)"
    )
    async with sockets(server, token) as second:
        recovered = await second.request({"type": "subscribe", "id": 1, "channel": channel, "recover": position})
        assert recovered["type"] == "subscribed" and recovered["recovered"] is True, recovered
        changes = [publication["data"] for publication in recovered["publications"]]
        assert [(c["event"], c["pk"]) for c in changes] == [("created", int(note)), ("updated", int(note))], changes
        assert changes[-1]["data"]["text"] == "edited"


async def test_a_sync_rule_on_the_orm_admits_a_member_and_refuses_another(server, site, sockets):
    async with sockets(server, await asyncio.to_thread(site.access_token, "ann")) as member:
        reply = await member.request({"type": "subscribe", "id": 1, "channel": "team:red"})
        assert reply["type"] == "subscribed", reply
    async with sockets(server, await asyncio.to_thread(site.access_token, "bob")) as outsider:
        reply = await outsider.request({"type": "subscribe", "id": 1, "channel": "team:red"})
        assert (reply["type"], reply["id"], reply["code"]) == ("error", 1, "permission_denied"), reply
        await outsider.ping()  # refused, not closed


async def test_the_apps_server_command_closes_a_message_over_its_bound(server, site):
    """`python -m realtime.server` (the guide's production command) bounds a message at twice
    MAX_FRAME_BYTES (64 KiB by default): over it, the socket is closed 1009 before it is held."""
    client = await Client.authenticated(server.ws_url, await asyncio.to_thread(site.access_token, "bob"))
    await client.ws.send(json.dumps({"type": "ping", "id": 1, "pad": "x" * (2 * 65536)}))
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(READY_TIMEOUT):
            while True:  # whatever was on its way before the close (a ping)
                await client.ws.recv()
    assert client.ws.close_code == 1009, client.ws.close_code


async def test_logout_closes_the_users_socket_as_revoked(server, sockets):
    tokens = await obtain_tokens(server, "cleo")
    async with sockets(server, tokens["access"]) as client:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
            response = await http.post(
                "/api/auth/logout/",
                json={"refresh": tokens["refresh"]},
                headers={"Authorization": f"Bearer {tokens['access']}"},
            )
        assert response.status_code in (200, 204), response.text
        await client.expect_disconnect(4503, "forbidden")


async def test_the_signals_arrive_in_order_and_a_failing_receiver_harms_nothing(server, site, sockets):
    token = await asyncio.to_thread(site.access_token, "ann")
    async with sockets(server, token) as watcher:
        reply = await watcher.request({"type": "subscribe", "id": 1, "channel": "public:disconnects"})
        assert reply["type"] == "subscribed", reply
        async with sockets(server, token) as client:
            session = client.welcome["session"]
            reply = await client.request({"type": "subscribe", "id": 1, "channel": "public:lobby"})
            assert reply["type"] == "subscribed", reply
            # The socket still works after the failing receiver: its publication comes back to it.
            published = await client.request(
                {"type": "publish", "id": 2, "channel": "public:lobby", "data": "still here"}
            )
            while published["type"] in ("join", "leave"):  # ann's own presence on the lobby may come first
                published = await client.recv()
            assert published["type"] == "published", published
            assert (await next_message(client, lambda data: True))["data"] == "still here"
            reply = await client.request({"type": "unsubscribe", "id": 3, "channel": "public:lobby"})
            assert reply["type"] == "unsubscribed", reply
        # The receivers run after the fact; the harness's announcement comes after the audit line.
        await next_message(watcher, lambda data: data == {"session": session})
    entries = [json.loads(line) for line in (site.root / "sockets.jsonl").read_text().splitlines()]
    entries = [entry for entry in entries if entry["session"] == session]
    assert [entry["event"] for entry in entries] == ["connected", "subscribed", "unsubscribed", "disconnected"], entries
    assert {entry["user"] for entry in entries} == {site.people["ann"]}
    assert entries[1]["channel"] == entries[2]["channel"] == "public:lobby"
    assert entries[3]["code"] == 1000, entries[3]
    failure = [r for r in log_records(server.log_text()) if FAILURE in r]
    assert failure and "fails_on_purpose" in "\n".join(failure), server.log_text()[-3000:]


async def test_a_graceful_stop_closes_the_sockets_and_their_records(site, tmp_path):
    served = FreshServer(site, "uvicorn", tmp_path / "stopped.log").start()
    try:
        await served.wait_ready()
        client = await Client.authenticated(served.ws_url, await asyncio.to_thread(site.access_token, "bob"))
        session = client.welcome["session"]
        served.signal_stop()
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(READY_TIMEOUT):
                while True:  # whatever comes before the close (a ping, a `disconnect`)
                    await client.ws.recv()
        # uvicorn closes its sockets itself with 1012 (service restart); the app's own goodbye is 1001.
        assert client.close_code in (1001, 1012), client.close_code
        # uvicorn re-raises the SIGTERM it handled once its shutdown is complete: -15 is a graceful stop.
        assert await served.aterminate() in (0, -signal.SIGTERM), served.log_text()[-3000:]
        assert "Application shutdown complete" in served.log_text(), served.log_text()[-3000:]
    finally:
        served.terminate()
    closed = await site.ashell(
        "from realtime.models import Connection\n"
        f"row = Connection.objects.get(session_id={session!r})\n"
        "print(row.closed_at is not None)"
    )
    assert closed == "True"
    assert not served.unexpected_problems(), served.log_text()[-3000:]


# ---------------------------------------------------------------- served by daphne


async def test_daphne_serves_the_same_project(site, wheel, sockets, tmp_path):
    """The other extra: daphne, installed offline too, with the guide's command."""
    await asyncio.to_thread(
        site.run, "python", "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE),
        f"{wheel}[daphne]",
    )  # fmt: skip
    assert (await asyncio.to_thread(site.run, "python", "-m", "pip", "check")).returncode == 0
    served = FreshServer(site, "daphne", tmp_path / "daphne.log").start()
    try:
        await served.wait_ready()
        channel = f"user:{site.people['dora']}"
        async with sockets(served, await asyncio.to_thread(site.access_token, "dora")) as client:
            assert (await client.request({"type": "subscribe", "id": 1, "channel": channel}))["type"] == "subscribed"
            await site.ashell(f"from realtime.publish import publish_sync\npublish_sync({channel!r}, 'from a shell')")
            assert (await client.recv_type("message"))["data"] == "from a shell"
    finally:
        served.terminate()
    assert not served.unexpected_problems(), served.log_text()[-3000:]


def test_the_guide_has_what_the_test_takes_from_it():
    """Each file the project needs, once (guards the marker comments against an edit of the guide)."""
    paths = [path for path, _, _ in guide_files()]
    expected = {"mysite/settings.py", "mysite/asgi.py", "mysite/urls.py", "people/models.py", "people/apps.py",
                "people/rules.py", "people/receivers.py", "people/tests.py"}  # fmt: skip
    assert sorted(paths) == sorted(expected), paths
    for server in ("uvicorn", "daphne"):
        assert guide_command(server)[0] == server and "mysite.asgi:application" in guide_command(server)
    assert guide_command("realtime")[:3] == ["python", "-m", "realtime.server"]
