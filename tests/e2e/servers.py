"""Real daphne and uvicorn processes for the end-to-end tests and the benchmark.

`DaphneServer` starts `python -m daphne ... project.asgi:application` (`UvicornServer`: the
production command, `python -m project.serve`) in the project directory with the environment
it is given, waits for `GET /healthz` to answer 200, and stops it with SIGTERM (so coverage
data and the node's shutdown hook run) or SIGKILL. Its stderr and stdout go to a log file,
which `problems()` scans for unhandled errors.

No Django import here: `bench/connects.py` uses this module standalone.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from project.serve import command as serve_command  # the production command (no Django import)

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_TIMEOUT = 45.0  # seconds; a bound on waiting, never a measurement (2 CPUs, coverage, cold imports)
STOP_TIMEOUT = 20.0  # daphne waits up to 10 s for the node's shutdown hook, then stops anyway
POLL_INTERVAL = 0.05
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# daphne -v 2: Twisted's own log goes to the Python log too (at -v 1 it is discarded), so an
# error inside the server itself (a failing shutdown trigger, a protocol error) reaches the file.
VERBOSE = ("-v", "2")

# What a server must never write to its log: an unhandled error anywhere in the process.
LOG_PROBLEMS = re.compile(r"Traceback \(most recent call last\)|Exception inside application|Unhandled error")
# A log record starts with a timestamp (Python logging), an access-log address, or a harness note;
# other lines (a traceback's) continue the record before them.
RECORD_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\d+\.\d+\.\d+\.\d+:\d+ - |==== )")
# Known upstream errors, not charged to every test: daphne's `kill_all_applications` fails with a
# KeyError at SIGTERM while it still holds the entry of a finished HTTP request (up to 1 s; every
# WebSocket handshake leaves one). realtime.runtime.node says "going away" to the sockets itself, so the
# clients still hear 1001; test_sigterm_just_after_a_new_connection_still_says_going_away checks it.
KNOWN_UPSTREAM = [("in kill_all_applications", "KeyError: 'application_instance'")]
# The static coverage context of the server processes' measurements (scripts/runtests.py counts them).
COVERAGE_CONTEXT = "e2e"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    """A `DATABASE_URL` (django-environ syntax) naming the database of a Django `settings_dict`."""
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        # sqlite:////abs/path: three slashes, then the absolute path's own.
        return f"sqlite:///{Path(name).resolve()}"
    if engine.endswith(("postgresql", "postgis")):
        user = quote(settings_dict.get("USER") or "", safe="")
        password = settings_dict.get("PASSWORD") or ""
        credentials = f"{user}:{quote(password, safe='')}" if password else user
        host = settings_dict.get("HOST") or ""
        port = settings_dict.get("PORT") or 5432
        at = f"{credentials}@" if credentials else ""
        scheme = "postgis" if engine.endswith("postgis") else "postgres"
        if not host:  # libpq's default (the local socket), as for the test process
            return f"{scheme}://{at}/{quote(name, safe='')}"
        if host.startswith("/"):  # a Unix socket directory: django-environ reads it from the path
            return f"{scheme}://{at}/{quote(f'{host}/{name}', safe='')}"
        return f"{scheme}://{at}{host}:{port}/{quote(name, safe='')}"
    raise ValueError(f"No DATABASE_URL for the engine {engine!r}")


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM when the parent dies (no orphaned servers)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:  # another libc: best effort only
            pass


class ServerDied(RuntimeError):
    """The server process ended (or never answered) before it was ready."""


class DaphneServer:
    """One daphne process serving project.asgi on 127.0.0.1."""

    READY_PATH = "/healthz"  # what `wait_ready` polls until it answers 200

    def __init__(
        self, env: dict[str, str], log_path: Path, *, name: str = "server", args: tuple[str, ...] = VERBOSE
    ) -> None:
        self.env = env
        self.args = tuple(args)  # daphne options before the application
        self.log_path = Path(log_path)
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._stopping = False

    # ------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`, without a trailing slash."""
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint, `ws://127.0.0.1:<port>/ws/`."""
        return f"ws://{HOST}:{self.port}/ws/"

    @property
    def pid(self) -> int:
        """The process id (the node name is `<hostname>:<pid>`)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def node(self) -> str:
        """This process's `Node.name`, as `realtime.runtime.node.node_name()` computes it inside it."""
        return f"{socket.gethostname()[:150]}:{self.pid}"

    # ------------------------------------------------------------ lifecycle

    workdir: Path = ROOT  # where the server process starts (its application's import root)

    def command(self) -> list[str]:
        """The server's command line."""
        daphne = [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(self.port)]
        return [*daphne, *self.args, "project.asgi:application"]

    def start(self, *, same_port: bool = False) -> DaphneServer:
        """Spawn daphne on a free port (or, with `same_port`, again on the last one: a restart the
        clients can find at the same URL); `wait_ready()` tells when it answers."""
        if self.alive:
            raise RuntimeError(f"{self.name} is still running")
        if not (same_port and self.port):
            self.port = free_port()
        self._stopping = False
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self._log_file.write(f"==== {self.name} on port {self.port}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        return self

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> DaphneServer:
        """Poll `GET READY_PATH` until it answers 200; raise `ServerDied` if the process ends or never answers."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerDied(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                status, body = await http_get(HOST, self.port, self.READY_PATH, timeout=2.0)
            except OSError as exc:
                last = repr(exc)
            else:
                if status == 200:
                    return self
                last = f"{status} {body[:200]!r}"
            await asyncio.sleep(POLL_INTERVAL)
        raise ServerDied(f"{self.name} not ready after {timeout} s (last: {last}):\n{self.log_text()[-4000:]}")

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: the process dies at once, with no cleanup of any kind."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self._reap(STOP_TIMEOUT)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait for the exit (SIGKILL after `timeout`); returns the exit status."""
        self.signal_stop()
        return self._reap(timeout)

    def signal_stop(self) -> None:
        """Send SIGTERM once, without waiting (to stop several servers at once, then `terminate()` each)."""
        # Once: a second SIGTERM makes Twisted stop a reactor already stopping (ReactorNotRunning).
        if self.alive and not self._stopping:
            self._stopping = True
            self.proc.send_signal(signal.SIGTERM)

    async def aterminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """`terminate()` without blocking the event loop (clients keep reading meanwhile)."""
        return await asyncio.to_thread(self.terminate, timeout)

    def _reap(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self._note(f"did not stop within {timeout} s of SIGTERM: killed")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def _note(self, text: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"==== harness: {self.name} {text}\n".encode())

    # ------------------------------------------------------------ logs

    def log_text(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def problems(self) -> list[str]:
        """Log records showing an unhandled error (a traceback, "Exception inside application", ...)."""
        return [record for record in log_records(self.log_text()) if is_problem(record)]


class UvicornServer(DaphneServer):
    """The same application under uvicorn, as the README runs it in production (`python -m project.serve`);
    `args` are uvicorn options after the documented ones."""

    def __init__(self, env: dict[str, str], log_path: Path, *, name: str = "uvicorn", args: tuple[str, ...] = ()):
        super().__init__(env, log_path, name=name, args=args)

    def command(self) -> list[str]:
        options = ("--host", HOST, "--port", str(self.port), "--log-level", "info", *self.args)
        if (Path(self.workdir) / "project" / "serve.py").is_file():
            return serve_command(*options)
        # A checkout from before project/serve.py (bench/flood.py --source): the command its README gave.
        return [
            sys.executable, "-m", "uvicorn", "project.asgi:application", "--ws", "websockets-sansio",
            "--lifespan", "on", "--ws-ping-interval", "0", *options,
        ]  # fmt: skip


def is_problem(record: str) -> bool:
    """Whether a log record shows an unhandled error (other than a known upstream one)."""
    if not LOG_PROBLEMS.search(record):
        return False
    return not any(all(part in record for part in known) for known in KNOWN_UPSTREAM)


def log_records(text: str) -> list[str]:
    """Split a log into records: a line that starts one, plus the continuation lines after it."""
    records: list[str] = []
    for line in text.splitlines():
        if records and not RECORD_START.match(line):
            records[-1] += "\n" + line
        else:
            records.append(line)
    return records


async def http_get(host: str, port: int, path: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET without blocking the loop: `(status, body)`."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode("latin1"))
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {raw[:100]!r}")
    return int(status_line[1]), body


def server_env(
    *,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    secret_key: str,
    signing_key: str,
    extra: dict[str, object] | None = None,
) -> dict[str, str]:
    """The environment of a server process: this one's, plus the shared database, Redis and keys."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REALTIME_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": redis_prefix,
            "SECRET_KEY": secret_key,
            "JWT_SIGNING_KEY": signing_key,
            # Production settings (no DEBUG), but over plain HTTP on 127.0.0.1: cookies without `Secure`.
            "DEBUG": "0",
            "ALLOWED_HOSTS": f"{HOST},localhost",
            "SECURE_COOKIES": "0",
            "PYTHONUNBUFFERED": "1",
            # Only 127.0.0.1 is used: keep any proxy settings away from local traffic.
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env.update({key: str(value) for key, value in (extra or {}).items()})
    mark_coverage(env)
    return env


def mark_coverage(env: dict[str, str], context: str = COVERAGE_CONTEXT) -> None:
    """Label what a measured server process runs with the static coverage context `context`, so that
    scripts/runtests.py can tell the server code the end-to-end runs reached. Coverage hands its
    configuration to subprocesses in `COVERAGE_PROCESS_CONFIG` (`patch = ["subprocess"]`); unmeasured
    runs (the benchmark, `--no-cov`) have none, and stay so."""
    data = env.get("COVERAGE_PROCESS_CONFIG")
    if data:
        from coverage.config import CoverageConfig  # only here: coverage measures this process

        config = CoverageConfig.deserialize(data)
        config.context = context
        env["COVERAGE_PROCESS_CONFIG"] = config.serialize()


def proc_status_kib(pid: int, field: str = "VmRSS") -> int:
    """A `kB` figure of `/proc/<pid>/status` (Linux): `VmRSS` (resident now) or `VmHWM` (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/{pid}/status")
