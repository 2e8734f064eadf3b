"""PasswordLogin, the ready-made token provider.

These run against httpx.MockTransport, a fake HTTP server inside httpx: this is a unit
test of the provider's own logic (which endpoint, which body, which refresh token is
kept, what happens on 401/503), not of the real API, which the end-to-end tests cover.
"""

import json

import httpx
import pytest
from realtime_client import PasswordLogin, RealtimeError

pytestmark = pytest.mark.unit


class FakeAPI:
    """The token endpoints: login issues (a1, r1); each refresh rotates and blacklists the old refresh token."""

    def __init__(self, password: str = "pw") -> None:
        self.password = password
        self.requests: list[tuple[str, dict]] = []
        self.issued = 0
        self.valid_refresh: set[str] = set()
        self.fail_next: httpx.Response | None = None

    def issue(self) -> httpx.Response:
        self.issued += 1
        refresh = f"r{self.issued}"
        self.valid_refresh.add(refresh)
        return httpx.Response(200, json={"access": f"a{self.issued}", "refresh": refresh})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append((request.url.path, body))
        if self.fail_next is not None:
            response, self.fail_next = self.fail_next, None
            return response
        if request.url.path == "/api/auth/token/":
            if body != {"username": "ann", "password": self.password}:
                return httpx.Response(401, json={"code": "unauthorized", "message": "bad credentials"})
            return self.issue()
        if request.url.path == "/api/auth/token/refresh/":
            if body["refresh"] not in self.valid_refresh:
                return httpx.Response(401, json={"code": "unauthorized", "message": "token is blacklisted"})
            self.valid_refresh.discard(body["refresh"])  # rotation: the old one is blacklisted
            return self.issue()
        return httpx.Response(404)


def make_login(api: FakeAPI, password: str = "pw", base: str = "http://api.test/") -> PasswordLogin:
    return PasswordLogin(base, "ann", password, transport=httpx.MockTransport(api))


async def test_login_then_refresh_keeping_the_rotated_token():
    api = FakeAPI()
    async with make_login(api) as login:
        assert await login() == "a1"
        assert await login() == "a2"
        assert await login() == "a3"
    assert api.requests == [
        ("/api/auth/token/", {"username": "ann", "password": "pw"}),
        ("/api/auth/token/refresh/", {"refresh": "r1"}),
        ("/api/auth/token/refresh/", {"refresh": "r2"}),
    ]


async def test_a_refused_refresh_falls_back_to_login():
    api = FakeAPI()
    login = make_login(api)
    assert await login() == "a1"
    api.valid_refresh.clear()  # e.g. blacklisted by a logout or a password change
    assert await login() == "a2"
    assert [path for path, _ in api.requests] == ["/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/token/"]
    await login.aclose()


async def test_a_failing_refresh_keeps_the_refresh_token():
    api = FakeAPI()
    login = make_login(api)
    await login()
    api.fail_next = httpx.Response(503, json={"code": "unavailable", "message": "database down"})
    with pytest.raises(RealtimeError) as info:
        await login()
    assert info.value.code == "unavailable" and "503" in info.value.message
    assert await login() == "a2"  # refreshed with r1 again, no new login
    assert [path for path, _ in api.requests][-1] == "/api/auth/token/refresh/"
    await login.aclose()


async def test_wrong_password_is_unauthorized():
    api = FakeAPI()
    login = make_login(api, password="nope")
    with pytest.raises(RealtimeError) as info:
        await login()
    assert info.value.code == "unauthorized" and "bad credentials" in info.value.message
    await login.aclose()


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (httpx.Response(429, json={"code": "rate_limited", "message": "slow down"}), "rate_limited"),
        (httpx.Response(500, text="<html>oops</html>"), "http_500"),
        (httpx.Response(200, json={"refresh": "r"}), "internal"),
        (httpx.Response(200, json=["not", "an", "object"]), "internal"),
    ],
)
async def test_http_failures_raise_with_a_code(response, code):
    api = FakeAPI()
    api.fail_next = response
    login = make_login(api)
    with pytest.raises(RealtimeError) as info:
        await login()
    assert info.value.code == code
    await login.aclose()


async def test_network_errors_are_unavailable():
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    login = PasswordLogin("http://api.test", "ann", "pw", transport=httpx.MockTransport(refuse))
    with pytest.raises(RealtimeError) as info:
        await login()
    assert info.value.code == "unavailable"
    await login.aclose()
