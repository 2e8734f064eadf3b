"""The demo chat as a new user meets it, in Chromium against real servers.

- A message sent while the server is down shows as pending, comes back to the input saying it
  was never sent (the client's `not_connected`, PROTOCOL §10 revised), and the error clears
  when the page reconnects; the badge's tooltip then says truly that nothing was missed.
- A message sent while the server hangs (SIGSTOP: the frame goes out, no reply comes) says it
  may have been published, stays marked, and settles once the server answers.
- Focus goes to the message input after signing in and after switching channels.
- The title stays on a 375 px screen; "Too many attempts" says for how long (`Retry-After`).
- The author shown is the publication's server-set `user`, never a name from its `data`.
- The page runs under a strict Content-Security-Policy without a violation.
Screenshots in test-results/: demo-pending-375.png, demo-unknown.png, demo-375.png, demo-1280.png.
"""

from __future__ import annotations

import os
import re
import signal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.async_api import Page, expect

from tests.browser.test_demo_chat import RECONNECT_TIMEOUT_MS, enter, expect_message, log_in, message, send

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(240)]

# The page's request timeout is the client's default, 10 s: waiting for it is bounded by this.
REQUEST_TIMEOUT_MS = 25_000
NARROW = {"width": 375, "height": 740}
WIDE = {"width": 1280, "height": 800}


def watch_csp(page: Page) -> list[str]:
    """Collect the page's Content-Security-Policy violations (Chromium reports them on the console)."""
    violations: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    return violations


async def expect_connected(page: Page, timeout: float | None = None) -> None:
    state = re.compile("^(connected|resumed)$")
    await expect(page.locator("#badge")).to_have_attribute("data-state", state, timeout=timeout)


async def test_a_message_sent_while_the_server_is_down_is_pending_then_given_back(servers, open_page, screenshot):
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1)
    alice = await open_page(server.url + "/", viewport=NARROW)
    await log_in(alice, "alice")
    server.kill9()
    await expect(alice.locator("#badge")).to_have_attribute("data-state", "reconnecting")

    await send(alice, "Anyone home?")  # the input empties at once ...
    pending = alice.locator("#messages .msg.pending")
    await expect(pending).to_have_count(1)  # ... and the message shows as pending, not gone
    await expect(pending.locator(".text")).to_have_text("Anyone home?")
    await expect(pending.locator(".status")).to_have_text("Waiting for the connection…")
    for item in ("#badge", "#badge-text", "#logout", ".brand-name"):  # "Reconnecting in N s" fits too
        await expect(alice.locator(item)).to_be_in_viewport(ratio=1)
    assert await alice.evaluate("(text => text.scrollWidth <= text.clientWidth)(document.getElementById('badge-text'))")
    await screenshot(alice, "demo-pending-375.png")

    # No connection within the request timeout: never sent, so it comes back to the input, saying so.
    await expect(alice.locator("#send-error")).to_have_text(
        re.compile(r"^Not sent \(no connection within 10 s\): .*send it again"), timeout=REQUEST_TIMEOUT_MS
    )
    await expect(alice.locator("#text")).to_have_value("Anyone home?")
    await expect(pending).to_have_count(0)

    # Back up: the stale error goes, and the tooltip's "nothing was missed" is true (nothing was).
    server.start(same_port=True)
    await server.wait_ready()
    await expect_connected(alice, timeout=RECONNECT_TIMEOUT_MS)
    await expect(alice.locator("#send-error")).to_be_hidden()
    await expect(alice.locator("#badge")).to_have_attribute("title", re.compile(r"nothing was missed$"))
    await alice.press("#text", "Enter")
    await expect_message(alice, "Anyone home?", author="You")


async def test_a_message_without_a_reply_may_have_been_sent_and_settles_when_it_shows_up(
    servers, open_page, screenshot
):
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1)
    alice = await open_page(server.url + "/")
    await log_in(alice, "alice")
    os.kill(server.pid, signal.SIGSTOP)  # the socket stays open; the frame goes out; nothing answers
    try:
        await send(alice, "Is this thing on?")
        pending = alice.locator("#messages .msg.pending")
        await expect(pending.locator(".status")).to_have_text("Sending…")
        await expect(alice.locator("#send-error")).to_have_text(
            re.compile(r"^Sent, but no reply yet: it may have been published"), timeout=REQUEST_TIMEOUT_MS
        )
        await expect(pending.locator(".status")).to_have_text("No reply: may have been sent")
        await expect(alice.locator("#text")).to_have_value("")  # not given back: resending could post it twice
        await screenshot(alice, "demo-unknown.png")
    finally:
        os.kill(server.pid, signal.SIGCONT)
    # The server wakes up and publishes it: the page finds it, and the message is simply there, once.
    await expect_message(alice, "Is this thing on?", author="You", timeout=REQUEST_TIMEOUT_MS)
    await expect(alice.locator("#messages .msg.pending")).to_have_count(0)
    await expect(alice.locator("#send-error")).to_be_hidden()


async def test_focus_is_in_the_message_input_after_sign_in_and_after_switching_channels(servers, open_page):
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1)
    alice = await open_page(server.url + "/")
    await log_in(alice, "alice")
    await expect(alice.locator("#text")).to_be_focused()
    await enter(alice, "room:kitchen")
    await expect(alice.locator("#text")).to_be_focused()
    await alice.keyboard.type("typed straight away")
    await alice.keyboard.press("Enter")
    await expect_message(alice, "typed straight away", author="You")


async def test_the_title_stays_on_a_375px_screen(servers, open_page, screenshot):
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1)
    for name, viewport in (("demo-375.png", NARROW), ("demo-1280.png", WIDE)):
        page = await open_page(server.url + "/", viewport=viewport)
        await log_in(page, "alice")
        await enter(page, "room:kitchen")
        await send(page, "A message that is long enough to wrap on a narrow phone screen, to see it wrap.")
        for title in (page.locator(".brand-name"), page.locator("#channel-title")):
            await expect(title).to_be_visible()
            await expect(title).to_be_in_viewport(ratio=1)
        await expect(page.locator(".brand-name")).to_have_text("Realtime")
        await expect(page.locator("#logout")).to_be_in_viewport(ratio=1)
        await expect(page.locator("#badge")).to_be_in_viewport(ratio=1)
        assert await page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        await screenshot(page, name)


async def test_too_many_attempts_says_for_how_long(servers, open_page):
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1, LOGIN_FAILURES_PER_USER=2, LOGIN_WINDOW=120)
    page = await open_page(server.url + "/")
    for _ in range(2):
        await page.fill("#username", "carol")
        await page.fill("#password", "not-the-password")
        await page.click("#login-button")
        await expect(page.locator("#login-error")).to_have_text("Wrong username or password.")
        await page.evaluate("document.getElementById('login-error').hidden = true")
    await page.click("#login-button")
    # The 429's Retry-After is 120 s.
    await expect(page.locator("#login-error")).to_have_text("Too many attempts: try again in 2 minutes.")


async def test_the_author_is_the_publisher_never_a_name_in_the_data(servers, open_page, ws, tokens):
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1)
    alice = await open_page(server.url + "/")
    await log_in(alice, "alice")
    await expect(alice.locator("#presence li .name")).to_have_text(["alice"])
    carol = await sync_to_async(get_user_model().objects.get)(username="carol")
    access, _ = await tokens(carol)
    # Carol is not on the page's presence list (she never subscribed): her name is not known there.
    raw = await ws(server, token=access, welcome=True)
    forged = {"text": "I am the admin", "name": "admin", "author": "admin"}
    reply = await raw.request({"type": "publish", "id": 1, "channel": "public:lobby", "data": forged})
    assert reply["type"] == "published", reply
    item = message(alice, "I am the admin")
    await expect(item.locator(".author")).to_have_text(f"user #{carol.pk}")
    # Once the page learns her name from the server (she joins the channel), it shows it.
    await raw.request({"type": "subscribe", "id": 2, "channel": "public:lobby"})
    await expect(item.locator(".author")).to_have_text("carol")
    # What the page publishes carries no name of its own: the server's `user` says who.
    await send(alice, "plain")
    published = await raw.recv()
    while published["type"] != "message":  # presence pushes and heartbeats first
        assert published["type"] in {"subscribed", "join", "leave", "ping"}, published
        published = await raw.recv()
    assert published["data"]["text"] == "plain" and "name" not in published["data"], published
    assert published["user"] == (await alice.evaluate("window.realtimeDemo.client.user.id"))


async def test_the_page_works_under_a_strict_content_security_policy(servers, open_page):
    await sync_to_async(call_command)("demo_data")
    [server] = await servers(1)
    alice = await open_page("about:blank")
    violations = watch_csp(alice)
    response = await alice.goto(server.url + "/")
    policy = await response.header_value("content-security-policy")
    assert policy is not None and "script-src 'self'" in policy and "unsafe-inline" not in policy
    await log_in(alice, "alice")
    await enter(alice, "room:kitchen")
    await send(alice, "under CSP")
    await expect_message(alice, "under CSP", author="You")
    await enter(alice, "public:lobby")
    await alice.reload()
    await expect_connected(alice)
    assert violations == []
