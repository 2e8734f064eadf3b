"""The production server as the README runs it (uvicorn, `tests.e2e.servers.UvicornServer`) bounds
what one client can make it hold, and logs what it should:

- a frame bomb (permessage-deflate frames that inflate to 16 MiB each) leaves its memory alone,
  and a frame over twice `MAX_FRAME_BYTES` closes its socket (1009);
- a request head with an over-long line is answered, and one that never ends is closed;
- its logs carry no `?token=`, and a forged `X-Forwarded-For` is not the recorded address;
- static files are served without Django's warning about synchronous iterators.

`make run`'s server (scripts/run.py: runserver, daphne's) bounds frames and redacts its log too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import struct
import subprocess
import sys
import zlib

import pytest
from websockets.exceptions import ConnectionClosed

from realtime.server.serve import ws_max_size
from tests.browser.conftest import _collected_static  # noqa: F401 - `collectstatic` once, as a deployment does

from .client import Client
from .rows import poll_rows
from .servers import HOST, ROOT, free_port, http_get, proc_status_kib
from .test_devserver import wait_listening

sys.path.insert(0, str(ROOT / "scripts"))

import run  # noqa: E402  (scripts/run.py, `make run`)

WAIT = 60.0  # a bound on waiting for the server to answer or close, never a measurement
MAX_FRAME_BYTES = 65536  # REALTIME's default, which these servers run with
BOMB_FRAMES = 30
BOMB_BYTES = 16 * 1024 * 1024 - 1024  # what each frame inflates to: under uvicorn's own default bound (16 MiB)
# Only an inflate that is not bounded near MAX_FRAME_BYTES grows the server by this much: the 30 frames
# inflate to 480 MiB, a bounded server holds at most one frame of twice MAX_FRAME_BYTES.
GROWTH_BOUND_KIB = BOMB_FRAMES * 4 * MAX_FRAME_BYTES // 1024
OFFER_DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def deflated_frame(payload: bytes) -> bytes:
    """One client text frame (FIN, masked) whose `payload` is deflated (RSV1, permessage-deflate)."""
    size = len(payload)
    if size < 126:
        head = bytes([0xC1, 0x80 | size])
    elif size < 65536:
        head = bytes([0xC1, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([0xC1, 0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + mask + masked


def deflated(text: bytes) -> bytes:
    """`text` as one permessage-deflate message (RFC 7692: raw deflate, the final empty block removed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)  # a 4 KiB window: any negotiated window takes it
    data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


async def open_raw(port: int, head: str = "", *, end: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection that sent a WebSocket handshake for /ws/ with the extra header lines `head`
    (ended by the blank line unless `end` is false)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/ HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{head}" + ("\r\n" if end else "")
    )
    writer.write(request.encode("latin1"))
    await writer.drain()
    return reader, writer


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded by WAIT)."""
    async with asyncio.timeout(WAIT):
        with contextlib.suppress(ConnectionError):
            return await reader.read()
    return b""


@pytest.mark.parametrize("options", [(), ("--ws-per-message-deflate", "true")], ids=["as-documented", "deflate-on"])
async def test_a_frame_bomb_leaves_the_servers_memory_alone(launch, options):
    """30 deflated frames of 16 MiB each (about 16 KB each on the wire) from one anonymous socket:
    the server refuses them before inflating them (with permessage-deflate on too, by frame size)."""
    server = launch("uvicorn", args=("--log-level", "info", *options))
    await server.wait_ready()
    warm_reader, warm = await open_raw(server.port)  # the WebSocket code paths loaded before measuring
    assert (await warm_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    warm.close()
    before = proc_status_kib(server.pid, "VmRSS")

    reader, writer = await open_raw(server.port, OFFER_DEFLATE)
    handshake = await reader.readuntil(b"\r\n\r\n")
    assert handshake.startswith(b"HTTP/1.1 101"), handshake
    assert (b"permessage-deflate" in handshake) is bool(options), handshake  # off as documented
    frame = deflated_frame(deflated(b"a" * BOMB_BYTES))
    with contextlib.suppress(ConnectionError):  # the server may close before the last one arrives
        for _ in range(BOMB_FRAMES):
            writer.write(frame)
        await writer.drain()
    await read_to_end(reader)  # the server closed the socket: whatever it inflated, it has by now
    writer.close()
    peak = max(proc_status_kib(server.pid, "VmHWM"), proc_status_kib(server.pid, "VmRSS"))
    print(f"RSS under the frame bomb ({BOMB_FRAMES} x {len(frame)} bytes on the wire): "
          f"before {before} KiB, peak after {peak} KiB")  # fmt: skip
    assert peak - before < GROWTH_BOUND_KIB, (before, peak)
    assert (await http_get(HOST, server.port, "/healthz"))[0] == 200


@pytest.mark.parametrize("length", [9000, 20000])
async def test_a_handshake_with_an_over_long_header_line_is_answered_and_closed(servers, length):
    (server,) = await servers(1, "uvicorn")
    reader, writer = await open_raw(server.port, f"X-Long: {'a' * length}\r\n")
    answer = await read_to_end(reader)  # ends: the server closed the connection
    writer.close()
    assert answer.split(b" ", 2)[1] in (b"400", b"431"), answer[:200]


async def test_a_request_head_that_never_ends_is_closed_by_the_server(servers):
    (server,) = await servers(1, "uvicorn")
    half_reader, half = await open_raw(server.port, "X-Half: 1\r\n", end=False)
    silent_reader, silent = await asyncio.open_connection(HOST, server.port)
    answers = await asyncio.gather(read_to_end(half_reader), read_to_end(silent_reader))
    half.close()
    silent.close()
    assert [answer[:12] for answer in answers] == [b"", b""]  # closed, with nothing to answer
    assert (await http_get(HOST, server.port, "/healthz"))[0] == 200


async def test_the_log_has_a_line_per_socket_and_request_and_no_token(servers, new_user, tokens):
    (server,) = await servers(1, "uvicorn")
    access, _ = await tokens(await new_user("ann"))
    client = await Client.open(server.ws_url, query={"token": access, "resume": "s_x"})
    assert (await client.recv_type("welcome"))["user"]["username"] == "ann"
    await client.close()
    assert (await http_get(HOST, server.port, f"/healthz?token={access}"))[0] == 200
    await server.aterminate()
    log = server.log_text()
    secret = access.rsplit(".", 1)[1]  # the signature: no log line may carry any of it
    assert secret[:16] not in log and access[:40] not in log
    assert '"WebSocket /ws/?token=[redacted]&resume=s_x" [accepted]' in log, log[-3000:]
    assert '"GET /healthz?token=[redacted] HTTP/1.0" 200' in log  # (tests.e2e.servers.http_get)
    assert "socket auth session=" in log and "socket close session=" in log


@pytest.mark.parametrize(("proxies", "recorded"), [(0, HOST), (1, "203.0.113.9")], ids=["no-proxy", "one-proxy"])
async def test_the_recorded_address_follows_trusted_proxy_count(servers, new_user, tokens, proxies, recorded):
    """TRUSTED_PROXY_COUNT=0 (the default): the peer's address is the client's, whatever a header says;
    with one trusted proxy in front, the address that proxy saw (its X-Forwarded-For), as for logins."""
    (server,) = await servers(1, "uvicorn", TRUSTED_PROXY_COUNT=proxies)
    access, _ = await tokens(await new_user("ann"))
    client = await Client.open(server.ws_url, token=access, headers={"X-Forwarded-For": "203.0.113.9"})
    session = (await client.recv_type("welcome"))["session"]
    (row,) = await poll_rows(lambda rows: True, [session])
    await client.close()
    assert row.remote_addr == recorded
    if not proxies:
        assert "203.0.113.9" not in server.log_text()


async def test_static_files_are_served_without_the_synchronous_iterator_warning(servers):
    (server,) = await servers(1, "uvicorn")
    status, body = await http_get(HOST, server.port, "/static/realtime/realtime.js")
    assert status == 200
    assert body == (ROOT / "realtime" / "static" / "realtime" / "realtime.js").read_bytes()
    await server.aterminate()
    assert "synchronous iterators" not in server.log_text()


async def frames_over_the_bound_close_the_socket(ws_url: str, access: str, codes: set[int | None]) -> None:
    """A frame a byte over the server's bound ends the socket (close code in `codes`, None for a dropped
    connection); one at the bound gets the protocol's `too_large`."""
    bound = ws_max_size()
    assert bound == 2 * MAX_FRAME_BYTES
    client = await Client.authenticated(ws_url, access)
    reply = await client.request("x" * bound)  # not JSON, but its size is checked first
    assert reply["type"] == "error" and reply["code"] == "too_large", reply
    await client.send("x" * (bound + 1))
    with pytest.raises(ConnectionClosed) as ended:
        await client.recv(WAIT)
    assert (ended.value.rcvd.code if ended.value.rcvd else None) in codes, ended.value


async def test_a_frame_over_twice_max_frame_bytes_closes_the_socket(servers, new_user, tokens):
    (server,) = await servers(1, "uvicorn")
    access, _ = await tokens(await new_user("ann"))
    await frames_over_the_bound_close_the_socket(server.ws_url, access, {1009})


async def test_make_run_bounds_frames_and_keeps_tokens_out_of_its_log(server_base_env, tmp_path, new_user, tokens):
    access, _ = await tokens(await new_user("ann"))
    port, log = free_port(), tmp_path / "runserver.log"
    process = subprocess.Popen(
        run.runserver_command(f"{HOST}:{port}"), cwd=ROOT, env={**server_base_env, "DEBUG": "1"},
        stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        await wait_listening(port, process, log)
        # autobahn (daphne's WebSocket layer) drops the connection rather than sending 1009.
        await frames_over_the_bound_close_the_socket(f"ws://{HOST}:{port}/ws/", access, {1009, None})
        assert (await http_get(HOST, port, f"/healthz?token={access}"))[0] == 200
        socket = await Client.open(f"ws://{HOST}:{port}/ws/", query={"token": access})
        await socket.recv_type("welcome")
        await socket.close()
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the autoreloader and its child
        process.wait(10)
    text = log.read_text()
    assert access[:40] not in text and access.rsplit(".", 1)[1][:16] not in text
    assert "GET /healthz?token=[redacted] 200" in text, text[-3000:]
