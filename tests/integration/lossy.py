"""Channel layers that misbehave on purpose: the layer is a transport, not a store."""

from channels.layers import InMemoryChannelLayer

from realtime.publish import MESSAGE_EVENT


class LossyLayer(InMemoryChannelLayer):
    """Drops the publications whose offset is in `DROP` (set by the test)."""

    DROP: set[int] = set()

    async def group_send(self, group, message):
        if message.get("type") == MESSAGE_EVENT and message["offset"] in self.DROP:
            return
        await super().group_send(group, message)


class EchoingLayer(InMemoryChannelLayer):
    """Delivers every publication twice."""

    async def group_send(self, group, message):
        await super().group_send(group, message)
        if message.get("type") == MESSAGE_EVENT:
            await super().group_send(group, message)


class FailingDiscardLayer(InMemoryChannelLayer):
    """Cannot leave groups (Redis went away just as sockets close)."""

    async def group_discard(self, group, channel):
        raise ConnectionError("the channel layer is down")
