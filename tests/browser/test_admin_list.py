"""The admin's list of socket sessions in a real browser, on a laptop-sized screen (1280x800).

Real sockets make the rows (a real daphne process writes them: real session ids, the
process's node name, header and query-string authentication), some still open and some
closed by their clients. A staff user logs in through the admin's form and opens the
list: the table must fit the window, with no column cut off or scrolled out of view.
The screenshot is test-results/admin-connections.png.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from realtime.models import Connection
from tests.conftest import PASSWORD
from tests.e2e.client import Client
from tests.e2e.rows import poll_rows

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(180)]

LAPTOP = {"width": 1280, "height": 800}
# Usernames as long as real ones get: the list must not need a wider screen for them.
USERNAMES = ("margaret.hamilton", "grace.hopper", "katherine.johnson", "dorothy.vaughan")

# How far the changelist reaches to the right, measured in the page: the table itself, the box that
# scrolls it (Django's `.results` has `overflow-x: auto`), and the document.
OVERFLOW = """() => {
    const table = document.querySelector("#result_list");
    const box = table.closest(".results") || table.parentElement;
    const root = document.documentElement;
    return {
        table: table.scrollWidth, box: box.clientWidth, boxScroll: box.scrollWidth,
        right: Math.ceil(table.getBoundingClientRect().right), window: window.innerWidth,
        page: root.scrollWidth, pageWidth: root.clientWidth,
        headers: [...table.querySelectorAll("thead th .text")].map((text) => text.textContent.trim()),
    };
}"""


async def open_sessions(server, new_user, tokens) -> tuple[list[Client], list[Client]]:
    """Two sockets per user (one header, one query-string token); returns (kept open, to close)."""
    keep, close = [], []
    for username in USERNAMES:
        access, _ = await tokens(await new_user(username))
        keep.append(await Client.authenticated(server.ws_url, access))
        by_query = await Client.open(server.ws_url, query={"token": access})
        by_query.welcome = await by_query.recv_type("welcome")
        close.append(by_query)
    return keep, close


async def test_the_connection_list_fits_a_laptop_screen(servers, new_user, tokens, open_page, screenshot):
    [server] = await servers(1)
    await new_user("operator", is_staff=True, is_superuser=True)
    keep, close = await open_sessions(server, new_user, tokens)
    try:
        for client in close:
            await client.close()
        closed_ids = [client.welcome["session"] for client in close]
        await poll_rows(lambda rows: all(row.closed_at is not None for row in rows), closed_ids)
        assert await Connection.objects.filter(closed_at__isnull=True).acount() == len(keep)

        page = await open_page(server.url + "/admin/login/?next=/admin/realtime/connection/", viewport=LAPTOP)
        await page.fill("#id_username", "operator")
        await page.fill("#id_password", PASSWORD)
        await page.click("input[type=submit]")
        await page.wait_for_url("**/admin/realtime/connection/")
        await expect(page.locator("#result_list tbody tr")).to_have_count(len(keep) + len(close))
        path = await screenshot(page, "admin-connections.png")
        size = await page.evaluate(OVERFLOW)
        print(f"screenshot: {path}; widths: {size}")
        await page.click("#result_list thead th.column-ended a")  # the computed column sorts too
        await page.wait_for_url("**/admin/realtime/connection/?o=*")
        await expect(page.locator("#result_list tbody tr")).to_have_count(len(keep) + len(close))
    finally:
        for client in keep:
            await client.close()

    assert size["table"] <= size["box"] and size["boxScroll"] <= size["box"], size  # nothing scrolls sideways
    assert size["right"] <= size["window"] and size["page"] <= size["pageWidth"], size  # nor off the window
    for column in ("User", "State", "Opened", "Node", "Auth"):
        assert any(header.startswith(column) for header in size["headers"]), size["headers"]
