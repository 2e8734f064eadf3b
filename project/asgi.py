"""ASGI entry point: `python -m project.serve` (uvicorn; project/serve.py), daphne and `runserver`.

HTTP goes to Django; WebSockets to the real-time consumer at /ws/, behind the
JWT middleware (which also decides whether the session cookie may be used: only
from an allowed Origin). `NodeMiddleware` registers this server process for
liveness on its first request.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Set up Django before anything imports models or simplejwt.
django_asgi_app = get_asgi_application()

import sys  # noqa: E402

from project import devkey, logfilters  # noqa: E402

# Whatever the server, its logs never carry a `?token=` (project/logfilters.py).
logfilters.install()

# Without SECRET_KEY, serve loopback only: refuse to start on another bind address.
devkey.check_serving(sys.argv)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.middleware import JWTAuthMiddlewareStack  # noqa: E402
from realtime import daphne_adapter  # noqa: E402
from realtime.node import NodeMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

daphne_adapter.install()

application = devkey.DevelopmentKeyGuard(
    NodeMiddleware(
        ProtocolTypeRouter(
            {
                "http": django_asgi_app,
                "websocket": JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
            }
        )
    )
)
