"""The demo chat page in a real browser, against real servers, through a server crash.

Alice's page is served by server A, Bob's by server B (one Redis, one database between
them, as in production). They log in with the demo users (`manage.py demo_data`), enter
the room `room:kitchen`, see each other present, and chat both ways. Then server A is
killed with SIGKILL: Alice's page counts down to its next retry while Bob, still
connected to B, sends two messages. Those are published while Alice cannot possibly
receive them, so the test needs no timing luck. Server A restarts on the same port;
Alice's page resumes its session and shows the two messages, marked recovered, and the
chat goes on. A reload shows the conversation again from history, and logging out ends
Bob's presence. Screenshots in test-results/: demo.png (desktop, after the recovery),
demo-reconnecting.png (during the outage) and demo-phone.png (a phone-sized screen).

The other tests: the lobby on a phone-sized screen, the token refresh before expiry
(without a reconnect), and a Django admin session in the same browser.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from playwright.async_api import Page, expect

from accounts.management.commands.demo_data import DEMO_PASSWORD
from realtime.models import Connection, Room
from tests.e2e.rows import poll_queryset

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(240)]

PHONE = {"width": 390, "height": 780}
# Bounds on waiting, never measurements. A retry after the restart may be up to the client's
# maximum backoff (20 s) away, and a cold daphne start takes a few seconds on 2 CPUs.
RECONNECT_TIMEOUT_MS = 60_000


async def log_in(page: Page, username: str) -> None:
    """Sign in through the form and wait for the socket's welcome."""
    await expect(page.locator("#hint")).to_contain_text("alice / bob / carol")
    await page.fill("#username", username)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#login-button")
    await expect(page.locator("#me")).to_have_text(username)
    await expect(page.locator("#badge")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#badge-text")).to_have_text("Connected")


async def enter(page: Page, channel: str) -> None:
    await page.click(f'#channels button[data-channel="{channel}"]')
    await expect(page.locator("#channel-name")).to_have_text(channel)
    await expect(page.locator(f'#channels button[data-channel="{channel}"]')).to_have_attribute("aria-current", "true")


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")
    await expect(page.locator("#text")).to_have_value("")


def message(page: Page, text: str):
    """The message item whose text is exactly `text`."""
    return page.locator("#messages .msg").filter(has=page.locator(".text", has_text=re.compile(f"^{re.escape(text)}$")))


async def expect_message(page: Page, text: str, *, author: str, recovered: bool = False, timeout: float | None = None):
    item = message(page, text)
    await expect(item).to_have_count(1, timeout=timeout)
    await expect(item.locator(".author")).to_have_text(author)
    if recovered:
        await expect(item).to_have_class(re.compile(r"\brecovered\b"))
        await expect(item.locator(".tag")).to_have_text("recovered")
    else:
        await expect(item).not_to_have_class(re.compile(r"\brecovered\b"))
        await expect(item.locator(".tag")).to_have_count(0)


async def expect_present(page: Page, *usernames: str, timeout: float | None = None) -> None:
    await expect(page.locator("#presence li .name")).to_have_text(list(usernames), timeout=timeout)


async def test_chat_survives_a_server_crash_and_recovers_the_missed_messages(servers, open_page, screenshot):
    await sync_to_async(call_command)("demo_data")  # alice, bob, carol; room:kitchen with alice and bob
    assert await Room.objects.filter(slug="kitchen", members__username="bob").aexists()
    a, b = await servers(2)

    alice = await open_page(a.url + "/")
    bob = await open_page(b.url + "/")
    await log_in(alice, "alice")
    await log_in(bob, "bob")

    # The lobby first (the default), then the room: both pages list it, both see each other.
    await expect(alice.locator("#channel-name")).to_have_text("public:lobby")
    await expect(alice.locator("#channels button .label")).to_have_text(["Lobby", "Kitchen"])
    await enter(alice, "room:kitchen")
    await enter(bob, "room:kitchen")
    await expect_present(alice, "alice", "bob")
    await expect_present(bob, "alice", "bob")
    await expect(alice.locator("#presence li", has_text="alice")).to_contain_text("(you)")

    # A conversation both ways, across the two server processes.
    await send(alice, "Hi Bob, dinner at eight?")
    await expect_message(bob, "Hi Bob, dinner at eight?", author="alice")
    await expect_message(alice, "Hi Bob, dinner at eight?", author="You")
    await expect(message(alice, "Hi Bob, dinner at eight?")).to_have_class(re.compile(r"\bmine\b"))
    await send(bob, "Sounds good! I'll bring <b>bread</b> & wine")
    # Markup typed by a user is shown as text, never interpreted.
    await expect_message(alice, "Sounds good! I'll bring <b>bread</b> & wine", author="bob")
    await expect(alice.locator("#messages b")).to_have_count(0)

    # Server A dies without a goodbye: Alice's page is disconnected and says when it retries.
    a.kill9()
    await expect(alice.locator("#badge")).to_have_attribute("data-state", "reconnecting")
    await expect(alice.locator("#badge-text")).to_have_text(re.compile(r"^Reconnecting in \d+ s$"))
    await expect(bob.locator("#badge")).to_have_attribute("data-state", "connected")
    await screenshot(alice, "demo-reconnecting.png")

    # While A is down (nothing can reach Alice), Bob writes twice through server B.
    await send(bob, "Are you still there?")
    await send(bob, "I'll take that as a yes")
    await expect_message(bob, "Are you still there?", author="You")
    await expect_message(bob, "I'll take that as a yes", author="You")
    await expect(message(alice, "Are you still there?")).to_have_count(0)
    await expect(alice.locator("#badge")).not_to_have_attribute("data-state", re.compile("^(connected|resumed)$"))

    # Server A comes back on the same port: Alice's page resumes its session and shows what it missed.
    a.start(same_port=True)
    await a.wait_ready()
    await expect(alice.locator("#badge")).to_have_attribute("data-state", "resumed", timeout=RECONNECT_TIMEOUT_MS)
    await expect(alice.locator("#badge-text")).to_have_text("Resumed")
    await expect_message(alice, "Are you still there?", author="bob", recovered=True)
    await expect_message(alice, "I'll take that as a yes", author="bob", recovered=True)
    # The tooltip says what the catch-up found: not "nothing was missed" above two recovered messages.
    caught_up = re.compile(r" resumed: 2 missed messages recovered$")
    await expect(alice.locator("#badge")).to_have_attribute("title", caught_up)
    # In order, after what was there before, and nothing twice.
    texts = await alice.locator("#messages .msg .text").all_text_contents()
    assert texts == [
        "Hi Bob, dinner at eight?",
        "Sounds good! I'll bring <b>bread</b> & wine",
        "Are you still there?",
        "I'll take that as a yes",
    ]
    await expect(alice.locator("#messages .msg.recovered-first")).to_have_count(1)

    # The conversation goes on live.
    await send(alice, "Sorry, lost my connection. Eight it is!")
    await expect_message(bob, "Sorry, lost my connection. Eight it is!", author="alice")
    await expect_present(bob, "alice", "bob", timeout=RECONNECT_TIMEOUT_MS)
    await expect_present(alice, "alice", "bob", timeout=RECONNECT_TIMEOUT_MS)
    await expect(alice.locator("#send-error")).to_be_hidden()
    await expect(alice.locator("#channel-notice")).to_be_hidden()
    saved = await screenshot(alice, "demo.png")
    assert saved.stat().st_size > 0

    # A reload keeps Bob signed in (sessionStorage) and in the room, with the whole talk from history.
    await bob.reload()
    await expect(bob.locator("#badge")).to_have_attribute("data-state", "connected")
    await expect(bob.locator("#channel-name")).to_have_text("room:kitchen")
    await expect(bob.locator("#messages .msg .text")).to_have_text(texts + ["Sorry, lost my connection. Eight it is!"])
    await expect(bob.locator("#messages .msg.recovered")).to_have_count(0)

    # Logging out: back to the form, and Alice sees Bob leave.
    await bob.click("#logout")
    await expect(bob.locator("#login-form")).to_be_visible()
    await expect(bob.locator("#badge")).to_have_attribute("data-state", "idle")
    await expect_present(alice, "alice", timeout=RECONNECT_TIMEOUT_MS)
    assert await bob.evaluate("sessionStorage.getItem('realtime-demo:tokens')") is None


async def test_the_lobby_on_a_phone_sized_screen(servers, open_page, screenshot):
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1)
    carol = await open_page(server.url + "/", viewport=PHONE, is_mobile=True, has_touch=True)

    # A wrong password is refused with a message; then the right one.
    await carol.fill("#username", "carol")
    await carol.fill("#password", "not-the-password")
    await carol.click("#login-button")
    await expect(carol.locator("#login-error")).to_have_text("Wrong username or password.")
    await log_in(carol, "carol")

    # Carol is in no room: the lobby only.
    await expect(carol.locator("#channels button .label")).to_have_text(["Lobby"])
    await expect(carol.locator("#channel-name")).to_have_text("public:lobby")
    await expect_present(carol, "carol")
    await send(carol, "Morning, everyone")
    await expect_message(carol, "Morning, everyone", author="You")

    # Nothing wider than the screen, and the composer is on it.
    overflow = await carol.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    box = await carol.locator("#composer").bounding_box()
    assert box is not None and box["y"] + box["height"] <= PHONE["height"] and box["width"] <= PHONE["width"]
    await screenshot(carol, "demo-phone.png")


async def test_the_page_refreshes_its_token_before_it_expires(servers, open_page):
    """Short-lived access tokens: on `expiring` the page's token provider calls the refresh endpoint
    (the refresh token rotates) and the socket refreshes in band, without a reconnect."""
    await sync_to_async(call_command)("demo_data")
    # Tokens live 66 s and `expiring` comes 58 s before the end: 8 s after the login, with less
    # than the page's 60 s margin left, so the provider fetches a new pair.
    [server] = await servers(1, JWT_ACCESS_SECONDS=66, REALTIME_REFRESH_LEAD=58)
    alice = await open_page(server.url + "/")
    async with alice.expect_websocket() as opened:
        await log_in(alice, "alice")
    refreshed = asyncio.Event()
    (await opened.value).on("framereceived", lambda text: '"type":"refreshed"' in text and refreshed.set())
    first = await alice.evaluate("JSON.parse(sessionStorage.getItem('realtime-demo:tokens'))")
    await alice.evaluate(
        "window.states = []; window.realtimeDemo.client.on('state', (e) => window.states.push(e.state))"
    )

    await alice.wait_for_function(
        "old => JSON.parse(sessionStorage.getItem('realtime-demo:tokens')).refresh !== old",
        arg=first["refresh"],
        timeout=30_000,
    )
    second = await alice.evaluate("JSON.parse(sessionStorage.getItem('realtime-demo:tokens'))")
    assert second["access"] != first["access"]

    # The server took the new token in band (`refresh` answered `refreshed`), on the same socket,
    # and its row records it (written in the background, so a moment later).
    await asyncio.wait_for(refreshed.wait(), 10)
    rows = Connection.objects.filter(user__username="alice", closed_at__isnull=True)
    await poll_queryset(lambda rows: [row.refresh_count for row in rows] == [1], rows)
    assert await alice.evaluate("window.states") == []
    await expect(alice.locator("#badge")).to_have_attribute("data-state", "connected")
    await send(alice, "still here")
    await expect_message(alice, "still here", author="You")


async def test_an_admin_session_in_the_same_browser_never_passes_for_the_user(servers, open_page):
    """Signed in to the admin as `admin` and to the demo as alice, the page is alice: the browser
    client presents alice's token at the handshake (`Sec-WebSocket-Protocol`), which the server takes
    before the session cookie, so the admin's session cookie does not authenticate it."""
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1)
    page = await open_page(server.url + "/admin/login/")
    await page.fill("#id_username", "admin")
    await page.fill("#id_password", "admin-pass-123")
    await page.click("input[type=submit]")
    await page.wait_for_url("**/admin/")

    await page.goto(server.url + "/")
    await page.fill("#username", "alice")
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#login-button")
    await expect(page.locator('#badge[data-state="connected"]')).to_be_visible()
    await expect(page.locator("#login-error")).to_be_hidden()
    await expect(page.locator("#me")).to_have_text("alice")
    await expect_present(page, "alice")
    assert await page.evaluate("window.realtimeDemo.client.user.username") == "alice"
