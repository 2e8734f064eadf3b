"""`make run`: serve with `manage.py runserver` (`runserver_command`), on Redis whenever there is one.

Redis makes what a user tries in the first hour work: a publication from the command
line, a Python shell or another process reaches the sockets, and history and sessions
outlive a restart of the server (resume and recovery). Which Redis, first found wins:

1. `REDIS_URL` when it is set (it must answer);
2. a Redis answering on 127.0.0.1:6379 (keys under the prefix `rt`);
3. a private `redis-server`, its append-only file in `.run/redis/`, started by the first
   `make run` and left running for the next ones (so a restart of the server keeps history,
   epochs and sessions: the demo page resumes and recovers); `make stop-redis` stops it;
4. none: the embedded in-memory engine and layer, with a warning that only this
   process's own sockets can be reached.

The chosen URL is recorded in `.run/redis-url` (and kept after the server stops), which
`manage.py` reads when REDIS_URL is not set: `manage.py publish public:lobby '"hi"'` reaches the
demo page, or, while the server is down, waits in history for the page to recover it.

Arguments: the address to serve on (default 127.0.0.1:8000).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from local_redis import DEFAULT_URL, INSTALL_HINT, find_redis_server, redis_answers, start_private_redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from project.serve import daphne_options  # noqa: E402  (the production server's bound on a frame)

PRIVATE_DIR = ROOT / ".run" / "redis"
URL_FILE = ROOT / ".run" / "redis-url"  # read by manage.py: `manage.py publish` reaches this server's Redis


def choose_redis(env: dict[str, str], *, default: str = DEFAULT_URL, private_dir: Path = PRIVATE_DIR) -> str:
    """The REDIS_URL to serve with ("" for none)."""
    url = env.get("REDIS_URL", "")
    if url:
        if not redis_answers(url):
            sys.exit(f"REDIS_URL={url} does not answer. Start that Redis, or unset REDIS_URL.")
        print(f"Serving with REDIS_URL={url}")
        return url
    if redis_answers(default):
        print(f"Serving with the Redis on {default} (set REDIS_URL to choose another)")
        return default
    if find_redis_server() is not None:
        return private_redis(private_dir)
    print(
        "WARNING: no Redis found: serving with the in-memory engine and layer. Publications from the\n"
        "command line or another process reach no socket, and a restart loses history and sessions.\n"
        f"{INSTALL_HINT}",
        file=sys.stderr,
    )
    return ""


def private_redis(private_dir: Path) -> str:
    """The URL of this checkout's private redis-server: the running one, or one started now
    (from its append-only file, when an earlier one left one)."""
    url_file = private_dir / "url"
    if url_file.is_file():
        url = url_file.read_text().strip()
        if redis_answers(url):
            print(f"Serving with the private redis-server at {url} (data in {private_dir}; make stop-redis)")
            return url
    private_dir.mkdir(parents=True, exist_ok=True)
    _, url = start_private_redis(str(private_dir), persist=True)
    url_file.write_text(url + "\n")
    print(f"Started a private redis-server at {url} (data in {private_dir}); it runs on: make stop-redis")
    return url


def record_redis(url: str, url_file: Path) -> None:
    """Record the Redis this checkout serves with for `manage.py` ("": forget an earlier one)."""
    if url:
        url_file.parent.mkdir(exist_ok=True)
        url_file.write_text(url + "\n")
    else:
        url_file.unlink(missing_ok=True)


def runserver_command(address: str) -> list[str]:
    """`manage.py runserver` (daphne's) on `address`, reading WebSocket messages no larger than the
    production server does (daphne's own bound is 1 MiB)."""
    return [sys.executable, "manage.py", "runserver", address, *daphne_options()]


def address_in_use(address: str) -> bool:
    """Whether something already listens on `host:port` (runserver would log a listen failure and
    hang there, not exit). An address that does not parse is left to runserver to refuse."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return False
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host.strip("[]") or "127.0.0.1", int(port)))
        except OSError:
            return True
    return False


def main(argv: list[str]) -> int:
    address = argv[0] if argv else "127.0.0.1:8000"
    if address_in_use(address):
        print(f"{address} is in use (another `make run`?): stop it, or serve on another port, e.g. "
              "`make run PORT=8001`.", file=sys.stderr)
        return 1
    env = dict(os.environ)
    url = choose_redis(env)
    env["REDIS_URL"] = url
    # Kept when the server stops: a second `make run` that fails, or Ctrl-C, must not leave
    # `manage.py publish` publishing into a memory that no server shares.
    record_redis(url, URL_FILE)
    server = subprocess.Popen(runserver_command(address), cwd=ROOT, env=env)
    try:
        while True:
            try:
                return server.wait()
            except KeyboardInterrupt:  # Ctrl-C reached runserver too: it is saying goodbye to its sockets
                continue
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            server.wait(30)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
