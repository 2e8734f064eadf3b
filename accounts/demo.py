"""The demo chat page at `/`: a plain page; everything after it happens in the browser.

The page logs in through the HTTP token API and talks to `/ws/` with the browser
client (`realtime/static/realtime/realtime.js`), so it needs no Django login. It is
served with a strict Content-Security-Policy: scripts and styles from the static files
only (no inline script, no inline style attribute), requests and sockets to this origin.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from accounts.management.commands.demo_data import DEMO_PASSWORD, USERS


def content_security_policy(request: HttpRequest) -> str:
    """The demo page's policy: its own origin (and STATIC_URL's, when that is another) for everything."""
    static = urlsplit(settings.STATIC_URL)
    assets = "'self'" + (f" {static.scheme}://{static.netloc}" if static.scheme and static.netloc else "")
    host = request.get_host()  # validated against ALLOWED_HOSTS
    # 'self' covers ws:/wss: of this host in CSP Level 3; named too for browsers that predate it.
    sockets = f"'self' ws://{host} wss://{host}"
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {assets}",
            f"style-src {assets}",
            "img-src 'self' data:",  # the favicon is a data: URL
            f"connect-src {sockets}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


@require_safe
def demo(request: HttpRequest) -> HttpResponse:
    """The demo chat page; it names the demo users only where `manage.py demo_data` created them."""
    demo_data = get_user_model().objects.filter(username__in=USERS).exists()
    context = {"demo_users": USERS, "demo_password": DEMO_PASSWORD} if demo_data else {}
    response = render(request, "accounts/demo.html", context)
    response["Content-Security-Policy"] = content_security_policy(request)
    return response
