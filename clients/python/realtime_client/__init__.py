"""Python client for the realtime server: WebSockets with resume, recovery and reconnects.

async with Client("ws://localhost:8000/ws/", token=PasswordLogin(api, "ann", pw)) as client:
    async for pub in client.subscribe("room:kitchen"):
        print(pub.data)
"""

from .auth import PasswordLogin, TokenProvider, jwt_expiry
from .backoff import backoff_delay, should_reconnect
from .client import Client
from .errors import RealtimeError
from .models import (
    ClientState,
    History,
    Member,
    Position,
    PresenceEvent,
    Publication,
    Published,
    StateChange,
    SubscribedEvent,
    SubscriptionState,
    UnsubscribedEvent,
    User,
)
from .redirects import SameOriginConnect
from .subscription import Subscription

__all__ = [
    "Client",
    "ClientState",
    "History",
    "Member",
    "PasswordLogin",
    "Position",
    "PresenceEvent",
    "Publication",
    "Published",
    "RealtimeError",
    "SameOriginConnect",
    "StateChange",
    "SubscribedEvent",
    "Subscription",
    "SubscriptionState",
    "TokenProvider",
    "UnsubscribedEvent",
    "User",
    "backoff_delay",
    "jwt_expiry",
    "should_reconnect",
]
