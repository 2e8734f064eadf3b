"""The demo chat page at `/` and its static files (the template, demo.js, demo.css, realtime.js)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client, override_settings

from accounts.management.commands.demo_data import DEMO_PASSWORD, USERS

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ASSETS = ("accounts/demo.js", "accounts/demo.css", "realtime/realtime.js")


@pytest.fixture
def page() -> str:
    response = Client().get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def test_the_page_needs_no_login(page):
    assert '<form id="login-form"' in page


def test_the_page_loads_the_module_and_the_stylesheet_from_static(page):
    assert '<script type="module" src="/static/accounts/demo.js"></script>' in page
    assert '<link rel="stylesheet" href="/static/accounts/demo.css">' in page
    # Nothing from elsewhere: no CDN, no external fonts.
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)


def test_the_page_names_the_api_endpoints_it_uses(page):
    assert 'data-token-url="/api/auth/token/"' in page
    assert 'data-refresh-url="/api/auth/token/refresh/"' in page
    assert 'data-logout-url="/api/auth/logout/"' in page
    assert 'data-rooms-url="/api/realtime/rooms/"' in page
    assert 'data-ws-path="/ws/"' in page


def test_the_page_names_the_demo_users_only_where_they_exist(page):
    assert 'id="hint"' not in page  # a deployment without the demo data does not advertise passwords
    call_command("demo_data")
    page = Client().get("/").content.decode()
    hint = re.search(r'<p id="hint"[^>]*>(.*?)</p>', page, re.S).group(1)
    for username in USERS:
        assert username in hint
    assert DEMO_PASSWORD in hint and "demo_data" in hint


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_the_page_is_read_only(method):
    assert getattr(Client(), method)("/").status_code == 405


def test_head_works():
    assert Client().head("/").status_code == 200


@pytest.mark.parametrize("asset", ASSETS)
def test_the_static_files_exist(asset):
    assert finders.find(asset), f"{asset} is missing from the app's static files"


def test_the_module_imports_the_client_relatively():
    # Relative, so it works under any STATIC_URL.
    source = open(finders.find("accounts/demo.js"), encoding="utf-8").read()
    assert 'from "../realtime/realtime.js"' in source
    # Data goes into the page as text, never as markup.
    assert "innerHTML" not in source and "insertAdjacentHTML" not in source


def test_production_serves_the_static_files_after_collectstatic(tmp_path):
    """As with DEBUG=0: `collectstatic`, then WhiteNoise serves them (JS with a JavaScript type:
    browsers refuse a module of any other type)."""
    middleware = list(settings.MIDDLEWARE)
    if "whitenoise.middleware.WhiteNoiseMiddleware" not in middleware:
        middleware.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
    with override_settings(STATIC_ROOT=tmp_path, MIDDLEWARE=middleware, DEBUG=False, WHITENOISE_USE_FINDERS=False):
        call_command("collectstatic", interactive=False, verbosity=0)
        client = Client()
        for asset in ASSETS:
            response = client.get(f"/static/{asset}")
            assert response.status_code == 200, asset
            body = b"".join(response.streaming_content)
            assert body == (tmp_path / asset).read_bytes()
            kind = "text/css" if asset.endswith(".css") else "text/javascript"
            assert response["Content-Type"].startswith(kind), (asset, response["Content-Type"])


def test_the_page_has_a_strict_content_security_policy():
    """Scripts and styles from this origin's static files only: no inline script, no eval, no framing."""
    response = Client().get("/", HTTP_HOST="localhost:8000")
    directives = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in response["Content-Security-Policy"].split(";")
    )
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self' ws://localhost:8000 wss://localhost:8000"
    assert directives["frame-ancestors"] == directives["base-uri"] == "'none'"
    assert "unsafe" not in response["Content-Security-Policy"]


def test_the_template_has_no_inline_script_or_style(page):
    """What the policy would refuse: a <script> without src, an on* handler, a style attribute."""
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", page)
    assert not re.search(r"\son[a-z]+=", page)
    assert not re.search(r"\sstyle=", page)
