"""The baseline's one consumer: the textbook Channels fan-out, with a JWT check at connect.

Wire format (JSON text frames, a small subset of docs/protocol.md's shapes, no offsets):

- handshake header `Authorization: Bearer <access>` (an HS256 JWT, as simplejwt issues it);
  invalid or missing: close 4501 before accepting. Valid: accept and push
  `{"type": "welcome", "user": {"id": …}}`.
- `{"type": "subscribe", "id", "channel"}` -> `group_add` -> `{"type": "subscribed", "id", "channel"}`
- `{"type": "publish", "id", "channel", "data"}` -> `group_send` -> `{"type": "published", "id", "channel"}`
- pushes `{"type": "message", "channel", "data", "user"}` to every socket in the group.
- `{"type": "ping"}` -> `{"type": "pong"}`.
"""

from __future__ import annotations

import re

import jwt
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

NOT_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def group_name(channel: str) -> str:
    """A Channels group name for a channel name (`public:lobby` -> `ch.public.lobby`)."""
    return "ch." + NOT_GROUP_CHARS.sub(".", channel)[:90]


def bearer_token(scope: dict) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class BaselineConsumer(AsyncJsonWebsocketConsumer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.joined: set[str] = set()
        self.user_id: object = None

    async def connect(self) -> None:
        try:
            claims = jwt.decode(bearer_token(self.scope), settings.JWT_SIGNING_KEY, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            await self.close(4501)
            return
        if claims.get("token_type") != "access" or "user_id" not in claims:
            await self.close(4501)
            return
        self.user_id = claims["user_id"]
        await self.accept()
        await self.send_json({"type": "welcome", "user": {"id": self.user_id}})

    async def receive_json(self, content, **kwargs) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        rid = content.get("id") if isinstance(content, dict) else None
        if kind == "subscribe":
            group = group_name(str(content.get("channel")))
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.add(group)
            await self.send_json({"type": "subscribed", "id": rid, "channel": content.get("channel")})
        elif kind == "publish":
            channel = str(content.get("channel"))
            await self.channel_layer.group_send(
                group_name(channel),
                {"type": "chat.message", "channel": channel, "data": content.get("data"), "user": self.user_id},
            )
            await self.send_json({"type": "published", "id": rid, "channel": channel})
        elif kind == "ping":
            await self.send_json({"type": "pong", "id": rid})
        else:
            await self.send_json({"type": "error", "id": rid, "code": "bad_request"})

    async def chat_message(self, event: dict) -> None:
        await self.send_json(
            {"type": "message", "channel": event["channel"], "data": event["data"], "user": event["user"]}
        )

    async def disconnect(self, code: int) -> None:
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
