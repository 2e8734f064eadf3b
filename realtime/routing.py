"""WebSocket URL routing: the one endpoint `/ws/`."""

from django.urls import path

from .admission import AdmissionGate
from .consumers import RealtimeConsumer

websocket_urlpatterns = [
    # (behind JWTAuthMiddlewareStack: the gate needs to know whether the handshake had credentials)
    path("ws/", AdmissionGate(RealtimeConsumer.as_asgi())),
]
