"""A stand-in for a socket at the switchboard (realtime/pubsub/switchboard.py): it keeps the control events it gets."""

from __future__ import annotations

import asyncio
from typing import Any


class Recorder:
    """Joins the switchboard where a socket would (by user, Django session or address) and keeps what it is handed."""

    def __init__(self, address: str = "") -> None:
        self.address = address
        self.events: list[dict[str, Any]] = []
        self._taken = 0  # how many `receive` has handed out
        self._arrived = asyncio.Event()

    def on_control(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._arrived.set()

    def control_gap(self) -> None:
        """Nothing to check here: an event the fan-out lost shows as one missing from `events`."""

    def unread(self) -> int:
        """How many events arrived that `receive` has not handed out."""
        return len(self.events) - self._taken

    async def receive(self, timeout: float) -> dict[str, Any]:
        """The next event not handed out yet, waiting up to `timeout` seconds for it."""
        while self._taken >= len(self.events):
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), timeout)
        self._taken += 1
        return self.events[self._taken - 1]
