"""python-socketio with its Redis manager, under uvicorn: the benchmark's optional second peer.

    REDIS_URL=redis://127.0.0.1:6379/0 JWT_SIGNING_KEY=... \
        python -m uvicorn peers.socketio_app:app --host 127.0.0.1 --port 8001   # from bench/

Socket.IO over a WebSocket (`/socket.io/?EIO=4&transport=websocket`), namespace `/`:

- connect with the auth payload `{"token": "<access>"}` (an HS256 JWT as simplejwt issues
  it, checked with PyJWT); refused without a valid one;
- event `subscribe` `{"channel"}` -> `enter_room`, acknowledged `{"ok": true}`;
- event `publish` `{"channel", "data"}` -> `emit("message", {"channel", "data", "user"}, room=channel)`
  through `AsyncRedisManager` (Redis pub/sub, so several processes share rooms), acknowledged;
- `GET /healthz` answers 200 (the benchmark waits for it).

No sessions, history, offsets or presence. Without `REDIS_URL` rooms stay in the process.
"""

from __future__ import annotations

import os

import jwt
import socketio

SIGNING_KEY = os.environ.get("JWT_SIGNING_KEY") or os.environ["SECRET_KEY"]
REDIS_URL = os.environ.get("REDIS_URL", "")
PREFIX = os.environ.get("REDIS_PREFIX", "socketio")

manager = socketio.AsyncRedisManager(REDIS_URL, channel=f"{PREFIX}:socketio") if REDIS_URL else None
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[], logger=False)


@sio.event
async def connect(sid: str, environ: dict, auth: object) -> None:
    token = auth.get("token") if isinstance(auth, dict) else None
    try:
        claims = jwt.decode(token or "", SIGNING_KEY, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
    if claims.get("token_type") != "access" or "user_id" not in claims:
        raise socketio.exceptions.ConnectionRefusedError("unauthorized")
    await sio.save_session(sid, {"user": claims["user_id"]})


@sio.event
async def subscribe(sid: str, payload: dict) -> dict:
    await sio.enter_room(sid, str(payload["channel"]))
    return {"ok": True, "channel": payload["channel"]}


@sio.event
async def publish(sid: str, payload: dict) -> dict:
    session = await sio.get_session(sid)
    channel = str(payload["channel"])
    await sio.emit("message", {"channel": channel, "data": payload.get("data"), "user": session["user"]}, room=channel)
    return {"ok": True, "channel": channel}


async def health(scope: dict, receive, send) -> None:
    """The ASGI app for everything but /socket.io/: 200 on /healthz, else 404 (run with `--lifespan off`)."""
    if scope["type"] != "http":
        return
    status = 200 if scope["path"] == "/healthz" else 404
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"not found"})


app = socketio.ASGIApp(sio, other_asgi_app=health)
