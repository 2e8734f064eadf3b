"""The demo chat page at `/`: a plain page; everything after it happens in the browser.

The page logs in through the HTTP token API and talks to `/ws/` with the browser
client (`realtime/static/realtime/realtime.js`), so it needs no Django login.
"""

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from .management.commands.demo_data import DEMO_PASSWORD, USERS


@require_safe
def demo(request: HttpRequest) -> HttpResponse:
    """The demo chat page; it names the demo users only where `manage.py demo_data` created them."""
    demo_data = get_user_model().objects.filter(username__in=USERS).exists()
    context = {"demo_users": USERS, "demo_password": DEMO_PASSWORD} if demo_data else {}
    return render(request, "realtime/demo.html", context)
