"""The browser client under an anonymous flood, in Chromium against a real daphne server.

Every place the process keeps for sockets without credentials (MAX_UNAUTHENTICATED) is
taken by anonymous sockets, so a further anonymous handshake is refused (HTTP 403). The
demo page still connects: its client presents the access token at the handshake, in
`Sec-WebSocket-Protocol` (docs/protocol.md 11.4), never in the URL. Meanwhile `/healthz`
stays 200 (saturated is not unhealthy) and `/metrics` shows the saturation.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from playwright.async_api import expect
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.browser.test_demo_chat import log_in
from tests.e2e.client import Client
from tests.e2e.web import HttpSession

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(180)]

PLACES = 3
METRICS_TOKEN = "browser-flood-metrics"


def samples(text: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus text answer, by name."""
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])  # uvicorn: the documented production server
async def test_the_page_connects_while_every_anonymous_place_is_taken(kind, servers, ws, open_page, screenshot):
    await sync_to_async(call_command)("demo_data")
    # The flood's sockets stay as long as the test needs them (no `auth` timeout meanwhile).
    [server] = await servers(
        1, kind, REALTIME_MAX_UNAUTHENTICATED=PLACES, REALTIME_AUTH_TIMEOUT=600, METRICS_TOKEN=METRICS_TOKEN
    )
    flood = [await ws(server) for _ in range(PLACES)]
    for socket in flood:
        await socket.ping()
    with pytest.raises(InvalidStatus) as refused:
        await Client.open(server.ws_url)
    assert refused.value.response.status_code == 403

    page = await open_page(server.url + "/")
    async with page.expect_websocket() as opened:
        await log_in(page, "alice")
    socket = await opened.value
    assert "token" not in socket.url and "eyJ" not in socket.url, socket.url
    await expect(page.locator("#me")).to_have_text("alice")
    await screenshot(page, f"flood-connected-{kind}.png")

    http = HttpSession(server.url)
    health = await asyncio.to_thread(http.request, "GET", "/healthz")
    assert health.status == 200, health.body
    assert health.json()["sockets"].startswith(f"saturated: {PLACES} sockets without credentials")
    metrics = await asyncio.to_thread(
        http.request, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert metrics.status == 200, metrics.body
    values = samples(metrics.body.decode())
    assert values["realtime_unauthenticated_connections"] == PLACES
    assert values["realtime_unauthenticated_limit"] == PLACES
    assert values["realtime_unauthenticated_refused_total"] >= 1
    # The flood still holds every place: the page got in with credentials, not in a freed place.
    for socket in flood:
        await socket.ping()
