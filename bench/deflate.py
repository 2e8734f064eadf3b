"""What permessage-deflate costs the production server per socket (docs/performance.md, "permessage-deflate").

Starts the production server (`python -m project.serve`, one process, in-memory layer, a fresh
SQLite database) with `--ws-per-message-deflate true` and then `false`, and for each:

1. opens `--sockets` sockets with a header token, each offering permessage-deflate as browsers and
   the Python client do, each subscribed to one channel; server RSS before and after, per socket;
2. publishes `--messages` chat-sized publications there from one more socket and waits until every
   socket has all of them; server CPU (user + system) per delivery, and the size of a `message`
   frame with and without deflate (computed with uvicorn's parameters).

Figures are what this script measures on this machine (no test asserts them):

    .venv/bin/python bench/deflate.py --sockets 1000 --messages 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import zlib
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flood import PASSWORD, USERNAME, prepare  # noqa: E402
from scenarios import cpu_seconds  # noqa: E402
from targets import NAMESPACES, ROOT  # noqa: E402

from realtime.support.conf import OPTIONS  # noqa: E402
from tests.e2e.servers import UvicornServer, proc_status_kib, server_env  # noqa: E402

CHANNEL = "bench:deflate"
# Chat-like text: words drawn from a small vocabulary, so that it compresses as prose does.
WORDS = (
    "the a kitchen is open again and dinner will be ready at seven so bring friend or two who has seen my "
    "keys left on table near window tomorrow morning train late sorry running ten minutes behind pasta "
    "salad bread wine cheese please pick up milk on your way home thanks love it see you soon"
).split()


def deflated_size(frames: list[str]) -> float:
    """Mean bytes of `frames` as one socket's permessage-deflate messages (uvicorn's parameters:
    a 4 KiB window, memLevel 5, the context kept from message to message)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -12, 5)
    sizes = [len(compressor.compress(f.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4 for f in frames]
    return sum(sizes) / len(sizes)


async def open_socket(url: str, token: str, compression: str | None) -> object:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, compression=compression,
                       proxy=None, ping_interval=None, max_size=None, open_timeout=60)  # fmt: skip
    first = json.loads(await ws.recv())
    assert first["type"] == "welcome", first
    await ws.send(json.dumps({"type": "subscribe", "id": 1, "channel": CHANNEL}))
    while json.loads(await ws.recv())["type"] != "subscribed":
        pass
    return ws


async def receive_all(ws: object, count: int) -> list[str]:
    got: list[str] = []
    while len(got) < count:
        text = await ws.recv()
        if json.loads(text)["type"] == "message":
            got.append(text)
    return got


async def measure(server: UvicornServer, args: argparse.Namespace, token: str) -> dict:
    """RSS per socket, and CPU and bytes per delivery, for the server as started."""
    url = server.ws_url
    warm = [await open_socket(url, token, "deflate") for _ in range(5)]  # code paths loaded
    before = proc_status_kib(server.pid)
    sockets = []
    for start in range(0, args.sockets, 100):
        batch = range(start, min(start + 100, args.sockets))
        sockets += await asyncio.gather(*(open_socket(url, token, "deflate") for _ in batch))
    await asyncio.sleep(3)  # let the server settle (its batched session rows)
    after = proc_status_kib(server.pid)
    negotiated = sockets[0].response.headers.get("Sec-WebSocket-Extensions", "")
    publisher = await open_socket(url, token, None)
    readers = [asyncio.create_task(receive_all(ws, args.messages)) for ws in [*sockets, *warm]]
    cpu = cpu_seconds(server.pid)
    words = random.Random(7)
    for n in range(args.messages):
        text = " ".join(words.choice(WORDS) for _ in range(words.randint(4, 20)))
        await publisher.send(json.dumps({"type": "publish", "id": n + 2, "channel": CHANNEL,
                                         "data": {"text": f"{n}: {text}", "mood": "hungry"}}))  # fmt: skip
    frames = (await asyncio.wait_for(asyncio.gather(*readers), 600))[0]
    deliveries = args.messages * len(readers)
    cpu = cpu_seconds(server.pid) - cpu
    for ws in [*sockets, *warm, publisher]:
        await ws.close()
    return {
        "negotiated": negotiated or "none",
        "rss_kib_per_socket": round((after - before) / args.sockets, 1),
        "cpu_us_per_delivery": round(cpu / deliveries * 1e6, 1),
        "message_bytes": round(sum(len(f) for f in frames) / len(frames), 1),
        "deflated_message_bytes": round(deflated_size(frames), 1),
    }


async def main(args: argparse.Namespace) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="deflate-") as tmp:
        # One user opens every socket, sends every publication and answers no heartbeat: limits lifted.
        limits = {"MAX_CONNECTIONS_PER_USER": args.sockets + 10, "RATE": 100000, "RATE_BURST": 100000,
                  "PUBLISH_BYTES_PER_SECOND": 1 << 30, "HEARTBEAT": 3600, "CONNECT_RATE": 100000,
                  "CONNECT_BURST": 100000, "NAMESPACES": json.dumps(NAMESPACES)}  # fmt: skip
        env = server_env(
            database_url=f"sqlite:///{tmp}/deflate.sqlite3", redis_url="", redis_prefix="deflate",
            secret_key=secrets.token_urlsafe(50), signing_key=secrets.token_urlsafe(50),
            extra={f"REALTIME_{key}": value for key, value in limits.items() if key in OPTIONS},
        )  # fmt: skip
        prepare(ROOT, env)
        for deflate in ("true", "false"):
            options = ("--log-level", "warning", "--no-access-log", "--ws-per-message-deflate", deflate)
            server = UvicornServer(env, Path(tmp) / f"deflate-{deflate}.log", args=options).start()
            try:
                await server.wait_ready()
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    reply = await http.post("/api/auth/token/", json={"username": USERNAME, "password": PASSWORD})
                    token = reply.raise_for_status().json()["access"]
                result = {"ws_per_message_deflate": deflate, **await measure(server, args, token)}
            finally:
                server.terminate()
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    os.chdir(ROOT)
    asyncio.run(main(parser.parse_args()))
