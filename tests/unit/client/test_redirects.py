"""Redirects: followed within the origin the client was given, refused to any other one.

The token goes in the first frame (`auth`) and PasswordLogin posts the password or the
refresh token, so following a redirect to another origin (scheme, host, port) would hand
them over. Real loopback servers: one that redirects, one on another port that records
whatever reaches it.
"""

import asyncio

import pytest
from realtime_client import ClientState, PasswordLogin, RealtimeError
from realtime_client.redirects import origin

from .fake_server import TIMEOUT, FakeHTTP, FakeServer

pytestmark = pytest.mark.unit

LOGIN, REFRESH = "/api/auth/token/", "/api/auth/token/refresh/"
TOKENS = (200, {"access": "a1", "refresh": "r1"})


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


@pytest.mark.parametrize("elsewhere", ["another port", "another host name"])
async def test_a_socket_redirected_to_another_origin_is_refused(make_client, elsewhere):
    """To another server, or to the same one under another name: not followed; the client stops and says why."""
    async with FakeServer() as other, FakeServer() as server:
        url = server.url
        if elsewhere == "another port":
            target, recorder = other.url, other
        else:  # the same server, which would accept /app/: only the origin differs
            target, recorder = f"ws://localhost:{port_of(url)}/app/", server
        server.redirects["/ws/"] = target
        client = make_client(url, token="secret-access")
        with pytest.raises(RealtimeError) as info:
            async with asyncio.timeout(TIMEOUT):
                await client.connect()
    # Nothing reached the other origin, let alone the token (sent in the first frame after the handshake).
    assert recorder.accepted == [] and "/app/" not in server.handshakes and other.handshakes == []
    assert server.handshakes == ["/ws/"]  # tried once: retrying cannot change the answer
    assert info.value.code == "redirect"
    assert target.removesuffix("/ws/").removesuffix("/app/") in info.value.message and url in info.value.message
    assert client.state is ClientState.CLOSED and "redirect" in client.states.items[-1].reason
    assert [error.code for error in client.errors.items] == ["redirect"]


async def test_a_socket_redirect_within_the_origin_is_followed(make_client):
    async with FakeServer(redirects={"/old/": "/ws/"}) as server:
        client = make_client(server.url.replace("/ws/", "/old/"))
        connecting = asyncio.create_task(client.connect())
        conn = await server.accept()
        auth = await conn.welcome()
        async with asyncio.timeout(TIMEOUT):
            await connecting
    assert auth["token"] == "t0" and server.handshakes == ["/old/", "/ws/"]


@pytest.mark.parametrize("status", [302, 307])
async def test_a_login_redirected_to_another_origin_is_refused(status):
    async with FakeHTTP({LOGIN: TOKENS}) as other:
        async with FakeHTTP({LOGIN: (status, {}, {"Location": f"{other.url}{LOGIN}"})}) as api:
            urls = api.url, other.url
            async with PasswordLogin(api.url, "ann", "secret-password") as login:
                with pytest.raises(RealtimeError) as info:
                    await login()
    assert other.requests == []  # the password never left for the other origin
    assert info.value.code == "redirect" and all(url in info.value.message for url in urls)


async def test_a_refresh_redirected_to_another_origin_is_refused():
    async with FakeHTTP({REFRESH: TOKENS}) as other:
        async with FakeHTTP({LOGIN: TOKENS}) as api:
            async with PasswordLogin(api.url, "ann", "pw") as login:
                assert await login() == "a1"
                api.routes[REFRESH] = (307, {}, {"Location": f"{other.url}{REFRESH}"})  # 307 keeps the body
                with pytest.raises(RealtimeError) as info:
                    await login()
    assert other.requests == []  # the refresh token r1 never reached it
    assert info.value.code == "redirect"
    assert [path for path, _ in api.requests] == [LOGIN, REFRESH]


async def test_a_login_redirect_within_the_origin_is_followed():
    async with FakeHTTP({"/old/": (307, {}, {"Location": LOGIN}), LOGIN: TOKENS}) as api:
        async with PasswordLogin(api.url, "ann", "pw") as login:
            login.LOGIN_PATH = "/old/"
            assert await login() == "a1"
    credentials = {"username": "ann", "password": "pw"}
    assert api.requests == [("/old/", credentials), (LOGIN, credentials)]  # 307: the same POST again


async def test_a_client_whose_login_is_redirected_away_stops(make_client):
    """PasswordLogin's refusal is terminal for the client too: `connect()` raises it, nothing is retried."""
    async with FakeHTTP({LOGIN: TOKENS}) as other, FakeServer() as server:
        async with FakeHTTP({LOGIN: (302, {}, {"Location": f"{other.url}{LOGIN}"})}) as api:
            async with PasswordLogin(api.url, "ann", "pw") as login:
                client = make_client(server.url, token=login)
                with pytest.raises(RealtimeError) as info:
                    async with asyncio.timeout(TIMEOUT):
                        await client.connect()
    assert info.value.code == "redirect" and other.requests == [] and len(api.requests) == 1
    assert server.handshakes == [] and client.state is ClientState.CLOSED


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:8000/ws/?x=1", "ws://127.0.0.1:8000"),
        ("WSS://Example.org/ws/", "wss://example.org:443"),
        ("http://[::1]/api/", "http://[::1]:80"),
    ],
)
def test_an_origin_is_scheme_host_and_port(url, expected):
    assert origin(url) == expected
