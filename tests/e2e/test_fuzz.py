"""Fuzzing one live server with hypothesis: arbitrary frames on an authenticated socket.

Properties (docs/protocol.md sections 1, 6-8):

- every frame carrying a valid `id` (an int, or a str of at most 64 characters) gets
  exactly one reply with that `id` (`pong` frames excepted: they answer the server's
  ping and get no reply), of an allowed type;
- the socket is closed only with a documented code for bad input (4500, 4008);
- the server logs no unhandled error;
- a second client (another user) doing ping/pong round trips meanwhile gets every
  `pong`, in order, with nothing else.

The socket lives across examples on one event loop in a background thread (hypothesis
calls the test once per example; the connections must outlive each call).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from realtime.core.protocol import MAX_ID_LENGTH, ErrorCode
from tests.conftest import make_tokens

from .client import Client

pytestmark = [pytest.mark.e2e]

KNOWN_TYPES = ["auth", "refresh", "ping", "pong", "subscribe", "unsubscribe", "publish", "history", "presence"]
# Stand-ins in generated frames, replaced by real tokens at send time.
OWN_TOKEN = "<own-token>"
OTHER_TOKEN = "<other-users-token>"
# Closes a fuzzed socket may get: repeated bad frames, repeated rate limiting.
ALLOWED_CLOSES = {4500, 4008}
# Reply types by request type; anything not listed may only get `error`.
# The success reply of each request type (PROTOCOL section 1: with the request's id, or none).
SUCCESS_REPLIES = {
    "ping": {"pong"},
    "refresh": {"refreshed"},
    "subscribe": {"subscribed"},
    "unsubscribe": {"unsubscribed"},
    "publish": {"published"},
    "history": {"history"},
    "presence": {"presence"},
}
# Pushes (no id) that requests of the fuzzed socket may cause: a channel it subscribed to gets
# its publications and presence changes; heartbeat pings are off (FUZZ_SERVER).
PUSHES = {"message", "join", "leave", "unsubscribed"}
ERROR_CODES = {str(code) for code in ErrorCode}
REPLY_TIMEOUT = 10.0  # a bound on waiting, never a measurement
FUZZ_SERVER = {
    # Keep the run going: these limits are tested elsewhere; here they would only cut it short.
    "REALTIME_MAX_ERRORS": 1_000_000,
    "REALTIME_RATE": 1_000_000,
    "REALTIME_RATE_BURST": 1_000_000,
    # No server heartbeat during the run: the bystander must see nothing but its pongs.
    "REALTIME_HEARTBEAT": 600,
}

# ---------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
request_ids = st.one_of(
    st.integers(),
    st.text(max_size=MAX_ID_LENGTH),
    st.text(min_size=MAX_ID_LENGTH + 1, max_size=MAX_ID_LENGTH + 8),
    st.booleans(),
    st.floats(),
    json_values,
)
channel_names = st.one_of(
    st.from_regex(r"(public|room|user|nope|[a-z]{1,8}):[A-Za-z0-9_.@=-]{1,20}", fullmatch=True),
    st.text(max_size=24),
    json_values,
)
positions = st.one_of(st.fixed_dictionaries({"epoch": st.text(max_size=8), "offset": st.integers()}), json_values)
tokens = st.one_of(st.sampled_from([OWN_TOKEN, OTHER_TOKEN]), st.text(max_size=40), json_values)
fields = st.fixed_dictionaries(
    {},
    optional={
        "id": request_ids,
        "token": tokens,
        "channel": channel_names,
        "data": json_values,
        "recover": positions,
        "since": positions,
        "limit": st.one_of(st.integers(), json_values),
        "resume": st.one_of(st.text(max_size=20), json_values),
    },
)
frame_types = st.one_of(st.sampled_from(KNOWN_TYPES), st.text(max_size=12), json_values)
typed_frames = st.builds(
    lambda kind, known, extra: {**extra, **known, "type": kind},
    frame_types,
    fields,
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
# What goes on the wire: ("text", str) as is, ("json", value) serialised, ("bytes", b) as a binary frame.
frames = st.one_of(
    st.tuples(st.just("text"), st.text()),
    st.tuples(st.just("json"), json_values),
    st.tuples(st.just("json"), typed_frames),
    st.tuples(st.just("json"), fields),
    st.tuples(st.just("bytes"), st.binary(max_size=64)),
)


def valid_id(value: Any) -> bool:
    """PROTOCOL section 1: an integer, or a string of at most 64 characters."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and len(value) <= MAX_ID_LENGTH
    )


def id_key(value: Any) -> tuple[str, Any]:
    """A Counter key that keeps 1 and "1" (and 1 and True) apart."""
    return type(value).__name__, value


def substitute(value: Any, own: str, other: str) -> Any:
    """Replace the token stand-ins anywhere in a generated value."""
    if value == OWN_TOKEN:
        return own
    if value == OTHER_TOKEN:
        return other
    if isinstance(value, dict):
        return {key: substitute(item, own, other) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, own, other) for item in value]
    return value


def not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} overflows a double")
    return value


def request_kind(wire: str | bytes) -> str | None:
    """The `type` of a frame that is a JSON object with a string type, else None."""
    if isinstance(wire, bytes):
        return None
    try:
        frame = json.loads(wire, parse_constant=not_json, parse_float=finite)
    except (ValueError, RecursionError):
        return None
    kind = frame.get("type") if isinstance(frame, dict) else None
    return kind if isinstance(kind, str) else None


def expected_reply(wire: str | bytes) -> tuple[Any, str] | None:
    """`(id, type)` when the server must answer this frame with that id, else None (it parses like the server)."""
    if isinstance(wire, bytes):
        return None
    try:
        frame = json.loads(wire, parse_constant=not_json, parse_float=finite)
    except (ValueError, RecursionError):
        return None  # not JSON (RFC 8259 has no NaN or Infinity): an id-less error
    if not isinstance(frame, dict) or "id" not in frame or not valid_id(frame["id"]):
        return None
    kind = frame.get("type")
    if kind == "pong":
        return None  # the answer to a server ping: no reply (realtime.socket.handlers.handle_pong)
    return frame["id"], kind if isinstance(kind, str) else ""


# ---------------------------------------------------------------- the loop and the clients


class LoopThread:
    """An asyncio loop running in a thread, so connections outlive each hypothesis example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine, timeout: float = 60.0) -> Any:
        """Run `coro` on the loop and return its result (re-raising its exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Bystander:
    """Another user's socket doing ping/pong round trips while the fuzzer runs."""

    client: Client
    round_trips: int = 0
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Ping with ids 0, 1, 2, ...; each next frame must be exactly the matching pong."""
        try:
            while not self.stop.is_set():
                await self.client.send({"type": "ping", "id": self.round_trips})
                frame = await self.client.recv(REPLY_TIMEOUT)
                if frame != {"type": "pong", "id": self.round_trips}:
                    self.failures.append(f"round trip {self.round_trips}: got {frame}")
                    return
                self.round_trips += 1
        except Exception as exc:  # a close or a timeout: recorded, the test reports it
            self.failures.append(f"round trip {self.round_trips}: {exc!r}")


@dataclass
class Fuzzed:
    """The fuzzed socket, reopened when the server closes it with an allowed code."""

    ws_url: str
    own: str
    other: str
    client: Client | None = None
    sent: int = 0
    sentinels: int = 0
    reopened: list[int] = field(default_factory=list)

    async def open(self) -> None:
        """(Re)connect with a header token and read `welcome`."""
        self.client = await Client.authenticated(self.ws_url, self.own)

    async def exchange(self, batch: list[tuple[str, Any]]) -> None:
        """Send the frames, then a sentinel ping, and check every reply up to the sentinel's pong."""
        wires = []
        for kind, value in batch:
            if kind == "json":
                wires.append(json.dumps(substitute(value, self.own, self.other)))
            else:
                wires.append(value)
        expected = [reply for reply in map(expected_reply, wires) if reply is not None]
        self.sentinels += 1
        sentinel = f"sentinel-{self.sentinels}"
        replies: list[dict] = []
        try:
            for wire in wires:
                await self.client.send(wire)
                self.sent += 1
            await self.client.send({"type": "ping", "id": sentinel})
            while True:
                frame = await self.client.recv(REPLY_TIMEOUT)
                if frame == {"type": "pong", "id": sentinel}:
                    break
                replies.append(frame)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            assert code in ALLOWED_CLOSES, f"closed with {code} ({exc}) after {wires!r}; replies {replies}"
            self.reopened.append(code)
            await self.open()
            return
        check_replies(wires, expected, replies)


def check_replies(wires: list, expected: list[tuple[Any, str]], replies: list[dict]) -> None:
    """Exactly one reply per valid id, of an allowed type; nothing else but id-less errors and pongs."""
    wanted = Counter(id_key(rid) for rid, _ in expected)
    got = Counter(id_key(frame["id"]) for frame in replies if "id" in frame)
    assert got == wanted, f"replies by id {dict(got)} != expected {dict(wanted)}\nsent {wires!r}\ngot {replies}"
    allowed_by_id: dict[tuple[str, Any], set[str]] = {}
    for rid, kind in expected:  # ids may repeat within a batch: any of their requests' reply types
        allowed_by_id.setdefault(id_key(rid), {"error"}).update(SUCCESS_REPLIES.get(kind, set()))
    idless = {"error", *PUSHES}  # an id-less request's reply, or a push, or an unattributable error
    for wire in wires:
        kind = request_kind(wire)
        if kind is not None:
            idless |= SUCCESS_REPLIES.get(kind, set())
    for frame in replies:
        if frame["type"] == "error":
            assert frame.get("code") in ERROR_CODES and isinstance(frame.get("message"), str), frame
            assert frame["code"] != "internal", (frame, wires)
        if "id" in frame:
            assert frame["type"] in allowed_by_id[id_key(frame["id"])], (frame, wires)
        else:
            # Without an id: the reply to a request sent without one, a push of a channel the
            # socket subscribed to, or an error for a frame the server could not attribute.
            assert frame["type"] in idless, (frame, wires)


# ---------------------------------------------------------------- the test


@pytest.fixture
def fuzz_rig(launch, make_user):
    """One server, the fuzzed socket, and the bystander pinging in the background."""
    ann, bob = make_user("ann"), make_user("bob")
    own, _ = make_tokens(ann)
    other, _ = make_tokens(bob)
    bystander_token, _ = make_tokens(bob)
    server = launch(**FUZZ_SERVER)
    runner = LoopThread()
    try:
        runner.run(server.wait_ready())
        fuzzed = Fuzzed(server.ws_url, own, other)
        runner.run(fuzzed.open())

        async def start_bystander() -> tuple[Bystander, asyncio.Task]:
            bystander = Bystander(await Client.authenticated(server.ws_url, bystander_token))
            return bystander, asyncio.ensure_future(bystander.run())

        bystander, task = runner.run(start_bystander())
        yield runner, server, fuzzed, bystander

        async def finish() -> None:
            bystander.stop.set()
            await asyncio.wait_for(task, REPLY_TIMEOUT * 2)
            await bystander.client.close()
            await fuzzed.client.close()

        runner.run(finish())
    finally:
        runner.stop()


def test_arbitrary_frames_get_one_reply_per_id_and_never_hurt_another_client(fuzz_rig):
    """Hypothesis sends batches of arbitrary frames; see the module docstring for the properties."""
    runner, server, fuzzed, bystander = fuzz_rig

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI is deterministic
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=st.lists(frames, min_size=1, max_size=8))
    def exchange(batch: list[tuple[str, Any]]) -> None:
        runner.run(fuzzed.exchange(batch))
        assert not bystander.failures, bystander.failures

    exchange()
    assert server.alive
    assert not server.problems(), server.log_text()[-6000:]
    # The bystander answers for itself: every pong, in order, nothing else.
    runner.run(asyncio.sleep(0))  # let the bystander's task record a last failure, if any
    assert not bystander.failures, bystander.failures
    assert bystander.round_trips > 0
    print(
        f"fuzz: {fuzzed.sent} frames in {fuzzed.sentinels} batches, reopened after {fuzzed.reopened}, "
        f"bystander round trips: {bystander.round_trips}"
    )


async def test_deeply_nested_json_is_a_bad_request(servers, ws, new_user, tokens):
    """A small frame of 5,000 nested arrays is malformed input (PROTOCOL section 8): `bad_request`, socket kept.

    `json.loads` raises RecursionError (not a ValueError) for it.
    """
    (server,) = await servers(1)
    client = await ws(server, token=(await tokens(await new_user("ann")))[0], welcome=True)
    reply = await client.request("[" * 5000)
    assert (reply["type"], reply.get("code")) == ("error", "bad_request"), reply
    await client.ping("still-open")
    assert not server.problems(), server.log_text()[-3000:]
