"""A close the server starts carries its reason in the WebSocket close frame too, not only in the
`disconnect` frame before it: a raw client (any WebSocket library, or one that missed the last
frame) sees why it was closed, e.g. 4501 `unauthorized`. Under daphne (`make run`'s runserver
serves with it) and uvicorn (the production command)."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from .client import Client

pytestmark = pytest.mark.parametrize("kind", ["daphne", "uvicorn"])


async def closed_with(client: Client) -> tuple[dict, int, str]:
    """Read to the end: the `disconnect` frame, and the close frame's code and reason."""
    disconnect = None
    try:
        while True:
            frame = await client.recv()
            if frame["type"] == "disconnect":
                disconnect = frame
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"no close frame from the server: {exc}"
        return disconnect, exc.rcvd.code, exc.rcvd.reason


async def test_the_close_frame_carries_the_disconnect_reason(servers, ws, new_user, tokens, kind):
    (server,) = await servers(1, kind, REALTIME_AUTH_TIMEOUT=1, REALTIME_MAX_ERRORS=2)
    access, _ = await tokens(await new_user("ann"))
    cases = []

    refused = await ws(server, token="not-a-token")  # an invalid token at the handshake
    cases.append((await closed_with(refused), 4501, "unauthorized"))

    silent = await ws(server)  # no credentials, and no `auth` within AUTH_TIMEOUT
    cases.append((await closed_with(silent), 4501, "auth_timeout"))

    unruly = await ws(server, token=access, welcome=True)
    for _ in range(3):  # past MAX_ERRORS bad frames
        await unruly.send("not json")
    cases.append((await closed_with(unruly), 4500, "bad_request"))

    if kind == "daphne":  # uvicorn closes its sockets itself at SIGTERM (1012, docs/operations.md)
        leaving = await ws(server, token=access, welcome=True)
        server.signal_stop()  # the node says goodbye to every socket
        cases.append((await closed_with(leaving), 1001, "going_away"))

    for (disconnect, code, reason), expected_code, expected_reason in cases:
        assert disconnect is not None and (disconnect["code"], disconnect["reason"]) == (code, reason)
        assert (code, reason) == (expected_code, expected_reason)
