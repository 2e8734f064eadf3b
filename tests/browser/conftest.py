"""Real-browser harness: Playwright (async API) driving Debian's Chromium against real daphne servers.

- The server fixtures are the end-to-end ones (`launch`, `servers`, ...; tests/e2e/conftest.py):
  real daphne processes on the test database and a real Redis, with production settings (DEBUG=0).
- Under DEBUG=0 WhiteNoise serves the static files from STATIC_ROOT, as in a deployment, so the
  suite runs `collectstatic` once before any server starts (WhiteNoise indexes STATIC_ROOT when
  the process starts).
- `browser` is Chromium at /usr/bin/chromium (or `$CHROMIUM`); when it is missing the test fails
  and says how to install it. Playwright's own browser download is never used.
- `open_page(url)` opens a page in a fresh browser context (its own sessionStorage and cookies);
  an uncaught error in any page fails the test, and every page's console is printed on failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

# The end-to-end fixtures, imported by name (a `*` import would register that conftest's hooks twice).
from tests.e2e.conftest import (  # noqa: F401
    _close_thread_connections,
    launch,
    new_user,
    server_base_env,
    servers,
    tokens,
    ws,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-results"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = (
    f"Chromium is not installed at {CHROMIUM}: the browser tests drive Debian's Chromium. "
    "Install it with `sudo apt-get install chromium` (or point $CHROMIUM at a Chromium binary)."
)
EXPECT_TIMEOUT_MS = 10_000  # a bound on waiting for the page, never a measurement
DESKTOP = {"width": 1180, "height": 760}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every browser test: it runs on the e2e tests' xdist worker (their servers, one at a time)."""
    for item in items:
        if "/browser/" in str(item.path):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.xdist_group("e2e"))


@pytest.fixture(scope="session", autouse=True)
def _collected_static() -> None:
    """`collectstatic` into STATIC_ROOT (git-ignored `staticfiles/`), as a deployment does before
    starting daphne: with DEBUG=0 the servers serve /static/ from there through WhiteNoise."""
    call_command("collectstatic", interactive=False, verbosity=0)
    assert (Path(settings.STATIC_ROOT) / "accounts" / "demo.js").is_file()


def chromium_path() -> str:
    """The Chromium executable, or a test failure saying how to install it (never a skip)."""
    found = shutil.which(CHROMIUM)
    if not found:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


@pytest.fixture
async def browser(launch) -> AsyncIterator[Any]:  # noqa: F811 - `launch` first: its servers outlive the browser
    """A headless Chromium (closed before the servers of `launch` stop)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover - requirements-dev.txt installs it
        pytest.fail("Playwright is not installed: `.venv/bin/pip install -r requirements-dev.txt`.", pytrace=False)
    executable = chromium_path()
    playwright = await async_playwright().start()
    try:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
    except Exception as exc:
        await playwright.stop()
        pytest.fail(f"Chromium at {executable} did not start: {exc}\n{INSTALL_HINT}", pytrace=False)
    try:
        yield browser
    finally:
        await browser.close()
        await playwright.stop()


@pytest.fixture
async def open_page(browser) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """`await open_page(server.url, viewport={...})`: a page in its own browser context, loaded."""
    from playwright.async_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    errors: list[str] = []
    consoles: list[list[str]] = []

    async def open_one(url: str, *, viewport: dict[str, int] | None = None, **context_options: Any) -> Any:
        context = await browser.new_context(viewport=viewport or DESKTOP, **context_options)
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        page = await context.new_page()
        log: list[str] = []
        consoles.append(log)
        name = f"page{len(consoles)}"
        page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: errors.append(f"{name}: {error}"))
        await page.goto(url)
        return page

    yield open_one
    for index, log in enumerate(consoles, 1):
        print(f"---- console of page{index}\n" + "\n".join(log))
    if errors:
        pytest.fail("Uncaught errors in the page:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def screenshot() -> Callable[[Any, str], Awaitable[Path]]:
    """`await screenshot(page, "demo.png")`: save it under test-results/ (git-ignored)."""

    async def save(page: Any, name: str) -> Path:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / name
        await page.screenshot(path=str(path))
        return path

    return save
