"""The command line: `listen` prints publications as JSON lines, `publish` sends one.

    python -m realtime_client listen --url ws://localhost:8000/ws/ --username ann --password pw room:kitchen
    python -m realtime_client publish --url ws://localhost:8000/ws/ --token "$ACCESS" room:kitchen '{"text": "hi"}'

Publications go to stdout, one JSON object a line (flushed); state changes and errors
go to stderr, one line each. Ctrl-C (SIGINT) ends `listen` cleanly with status 130, however
the process was started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from .auth import PasswordLogin, Token
from .backoff import close_name
from .client import Client
from .errors import RealtimeError
from .models import ClientState, Publication, StateChange, SubscribedEvent, UnsubscribedEvent


def json_argument(text: str) -> Any:
    """argparse type: a JSON value, with a clear message when it is not one."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON ({exc}): {text[:80]!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The `listen` and `publish` commands and their options."""
    parser = argparse.ArgumentParser(
        prog="python -m realtime_client", description="Listen to or publish on the channels of a realtime server."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the client's debug messages on stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    listen = commands.add_parser("listen", help="print the publications of channels as JSON lines")
    publish = commands.add_parser("publish", help="publish one JSON value to a channel")
    for command in (listen, publish):
        command.add_argument("--url", action="append", required=True, help="WebSocket URL (repeat for fallbacks)")
        credentials = command.add_mutually_exclusive_group(required=True)
        credentials.add_argument("--token", help="an access token")
        credentials.add_argument("--username", help="log in with this user (needs --password)")
        command.add_argument("--password", help="the password for --username")
        command.add_argument("--api", help="HTTP API base for --username (default: from the first --url)")
        command.add_argument("--timeout", type=float, default=10.0, help="request timeout in seconds (default 10)")
    listen.add_argument("channels", nargs="+", metavar="CHANNEL")
    publish.add_argument("channel", metavar="CHANNEL")
    publish.add_argument("data", type=json_argument, metavar="JSON")
    return parser


def api_base(ws_url: str) -> str:
    """The HTTP API base of a socket URL: ws -> http, wss -> https, path dropped."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def describe_state(change: StateChange) -> str:
    """One readable line for a state change, e.g. `state: disconnected (code 1006 abnormal) retry in 1.2 s`."""
    if change.state is ClientState.CONNECTED:
        return f"state: connected ({'resumed' if change.resumed else 'new session'})"
    if change.state is ClientState.CONNECTING:
        return f"state: connecting to {change.url}" if change.url else "state: connecting"
    cause = " ".join(part for part in (f"code {change.code}" if change.code else "", change.reason) if part)
    if change.code and not change.reason:
        cause = f"{cause} {close_name(change.code)}".rstrip()
    line = f"state: {change.state}" + (f" ({cause})" if cause else "")
    if change.delay is not None:
        line += f" retry in {change.delay:.1f} s"
    return line


def describe_error(exc: BaseException) -> str:
    """`error: <code>: <message>` for a protocol error, else the exception."""
    if isinstance(exc, RealtimeError):
        return f"error: {exc.code}: {exc.message}" if exc.message else f"error: {exc.code}"
    return f"error: {exc!r}"


def _credentials(args: argparse.Namespace) -> tuple[Token, Callable[[], Awaitable[None]] | None]:
    if args.token is not None:
        return args.token, None
    login = PasswordLogin(args.api or api_base(args.url[0]), args.username, args.password, timeout=args.timeout)
    return login, login.aclose


def _logger(verbose: bool, stderr: TextIO) -> logging.Logger:
    logger = logging.getLogger("realtime_client.cli")
    logger.propagate = False
    logger.handlers[:] = [logging.StreamHandler(stderr) if verbose else logging.NullHandler()]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    return logger


async def listen(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Print every publication of `args.channels` until the client closes (status 1)."""
    token, aclose = _credentials(args)
    client = Client(args.url, token=token, request_timeout=args.timeout, logger=_logger(args.verbose, stderr))

    def say(line: str) -> None:
        print(line, file=stderr, flush=True)

    def publication(pub: Publication) -> None:
        stdout.write(json.dumps(pub.to_json(), ensure_ascii=False) + "\n")
        stdout.flush()

    def subscribed(event: SubscribedEvent) -> None:
        how = ("recovered" if event.recovered else "not recovered") if event.recovering else "new"
        say(f"subscribed: {event.channel} at {event.epoch}:{event.offset} ({how})")

    def unsubscribed(event: UnsubscribedEvent) -> None:
        say(f"unsubscribed: {event.channel} ({event.reason})")

    client.on("state", lambda change: say(describe_state(change)))
    client.on("error", lambda exc: say(describe_error(exc)))
    for channel in args.channels:
        sub = client.subscribe(channel)
        sub.on("publication", publication)
        sub.on("subscribed", subscribed)
        sub.on("unsubscribed", unsubscribed)
        sub.on("error", lambda exc: say(describe_error(exc)))
    closed = asyncio.Event()
    client.on("state", lambda change: closed.set() if change.state is ClientState.CLOSED else None)
    try:
        await client.connect()
        await closed.wait()
        return 1
    except RealtimeError:
        return 1  # closed before connecting: the state line said why
    finally:
        await client.disconnect()
        if aclose is not None:
            await aclose()


async def publish(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Publish `args.data` to `args.channel` and print where it landed."""
    token, aclose = _credentials(args)
    client = Client(args.url, token=token, request_timeout=args.timeout, logger=_logger(args.verbose, stderr))
    try:
        async with asyncio.timeout(args.timeout * 2):
            await client.connect()
            published = await client.publish(args.channel, args.data)
    except RealtimeError as exc:
        print(describe_error(exc), file=stderr, flush=True)
        return 1
    except TimeoutError:
        print(f"error: timeout: not connected within {args.timeout * 2} s", file=stderr, flush=True)
        return 1
    finally:
        await client.disconnect()
        if aclose is not None:
            await aclose()
    print(json.dumps(published.to_json()), file=stdout, flush=True)
    return 0


async def amain(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run a command in the current event loop; argument errors raise SystemExit(2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.username is not None and not args.password:
        parser.error("--username needs --password")
    command = listen if args.command == "listen" else publish
    return await command(args, stdout or sys.stdout, stderr or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point: the exit status (0 ok, 1 error, 2 bad arguments, 130 Ctrl-C)."""
    # Ctrl-C (SIGINT) is how `listen` is stopped, also when this process was started with SIGINT
    # ignored (`cmd &` in a script, nohup): an ignored signal stays ignored across exec, and
    # asyncio.run() handles SIGINT only when its handler is Python's default one.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if _main_thread() else None
    try:
        return asyncio.run(amain(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
