"""Token handling: when the provider is asked, 4009/4501, refresh on `expiring`, failed attempts."""

import asyncio

import httpx
import pytest
from realtime_client import ClientState, PasswordLogin, RealtimeError

from .conftest import connect, reconnect, roundtrip
from .test_models import make_jwt

pytestmark = pytest.mark.unit

C = ClientState


class Provider:
    """An async token provider returning `tok1`, `tok2`, ... (or scripted values and exceptions)."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.script:
            value = self.script.pop(0)
            if isinstance(value, BaseException):
                raise value
            return value
        return f"tok{self.calls}"


async def test_provider_is_asked_only_when_needed(server, make_client):
    provider = Provider()
    client = make_client(server.url, token=provider)
    conn, auth = await connect(server, client)
    assert auth["token"] == "tok1" and provider.calls == 1
    await conn.close(4011)  # a plain reconnect reuses the token
    _, auth = await reconnect(server)
    assert auth["token"] == "tok1" and provider.calls == 1


async def test_4009_fetches_a_fresh_token_before_reconnecting(server, make_client):
    provider = Provider()
    client = make_client(server.url, token=provider)
    conn, _ = await connect(server, client)
    await conn.close(4009, "token_expired")
    change = await client.states.reach(C.DISCONNECTED)
    assert change.code == 4009
    _, auth = await reconnect(server, resumed=True)
    assert auth["token"] == "tok2" and auth["resume"] == "s_1" and provider.calls == 2


async def test_4009_with_a_fixed_token_stops(server, make_client):
    client = make_client(server.url, token="fixed")
    conn, _ = await connect(server, client)
    await conn.close(4009, "token_expired")
    assert (await client.states.reach(C.CLOSED)).code == 4009


async def test_token_near_its_exp_is_renewed_before_a_reconnect(server, make_client):
    now = [1_000_000.0]
    old, new = make_jwt({"exp": now[0] + 60}), make_jwt({"exp": now[0] + 400})
    provider = Provider(old, new)
    client = make_client(server.url, token=provider, clock=lambda: now[0])
    conn, auth = await connect(server, client)
    assert auth["token"] == old
    now[0] += 55  # 5 s left: too close to reconnect with
    await conn.close(1001)
    _, auth = await reconnect(server)
    assert auth["token"] == new and provider.calls == 2


async def test_4501_asks_once_more_and_stops_on_the_same_token(server, make_client):
    provider = Provider("same", "same")
    client = make_client(server.url, token=provider)
    conn, _ = await connect(server, client)
    await conn.close(4501, "unauthorized")
    change = await client.states.reach(C.CLOSED)
    assert change.code == 4501 and provider.calls == 2
    await asyncio.wait_for(client._task, 5)
    assert len(server.accepted) == 1


async def test_4501_with_a_new_token_reconnects_once(server, make_client):
    provider = Provider()
    client = make_client(server.url, token=provider)
    conn, _ = await connect(server, client)
    await conn.close(4501)
    conn = await server.accept()
    assert (await conn.expect("auth"))["token"] == "tok2"
    await conn.close(4501)  # rejected again before any welcome: stop
    assert (await client.states.reach(C.CLOSED)).code == 4501
    assert provider.calls == 2


async def test_4501_with_a_fixed_token_stops(server, make_client):
    client = make_client(server.url, token="fixed")
    conn, _ = await connect(server, client)
    await conn.close(4501)
    assert (await client.states.reach(C.CLOSED)).code == 4501


async def test_a_provider_that_raises_is_a_failed_attempt(server, make_client):
    provider = Provider(RuntimeError("vault down"), "tok")
    client = make_client(server.url, token=provider)
    connecting = asyncio.create_task(client.connect())
    failed = await client.states.reach(C.DISCONNECTED)
    assert failed.code is None and "vault down" in failed.reason and failed.delay is not None
    _, auth = await reconnect(server)
    await asyncio.wait_for(connecting, 5)
    assert auth["token"] == "tok"
    assert isinstance(client.errors.items[0], RuntimeError)


async def test_password_login_503_is_retried(server, make_client):
    """PasswordLogin over httpx.MockTransport: the login endpoint answers 503 once, then succeeds."""
    answers = [httpx.Response(503, json={"code": "unavailable", "message": "db"}), None]

    def handle(request):
        answer = answers.pop(0)
        return answer or httpx.Response(200, json={"access": "a1", "refresh": "r1"})

    login = PasswordLogin("http://api", "ann", "pw", transport=httpx.MockTransport(handle))
    client = make_client(server.url, token=login)
    asyncio.create_task(client.connect())
    failed = await client.states.reach(C.DISCONNECTED)
    assert "unavailable" in failed.reason
    _, auth = await reconnect(server)
    assert auth["token"] == "a1"
    await login.aclose()


@pytest.mark.parametrize("value", ["", None, RealtimeError("unauthorized", "no such user")])
async def test_no_token_from_the_provider_stops_without_connecting(server, make_client, value):
    client = make_client(server.url, token=Provider(value))
    with pytest.raises(RealtimeError) as info:
        await client.connect()
    assert info.value.code == "unauthorized"  # what stopped it, not a bare "closed"
    assert client.state is C.CLOSED and server.accepted == []


async def test_expiring_refreshes_in_band(server, make_client):
    provider = Provider()
    client = make_client(server.url, token=provider)
    conn, _ = await connect(server, client, expires_at=2_000_000_000)
    await conn.send({"type": "expiring", "expires_at": 2_000_000_000})
    refresh = await conn.expect("refresh")
    assert refresh["token"] == "tok2"
    await conn.reply(refresh, "refreshed", expires_at=2_000_000_300)
    await roundtrip(conn)
    assert client._core.link.expires_at == 2_000_000_300 and client.state is C.CONNECTED


async def test_a_failed_refresh_is_retried_until_expires_at(server, make_client):
    now = [1_000_000.0]
    provider = Provider("tok1", RuntimeError("flaky"))
    client = make_client(server.url, token=provider, clock=lambda: now[0])
    conn, _ = await connect(server, client)
    await conn.send({"type": "expiring", "expires_at": now[0] + 30})
    first = await conn.expect("refresh")  # the provider raised once, then this is the retry
    assert first["token"] == "tok3"
    await conn.reply(first, "error", code="unauthorized", message="bad token")
    second = await conn.expect("refresh")
    assert second["token"] == "tok4"
    now[0] += 31  # past expires_at: this failure is the last
    refresh_task = next(task for task in client._driver.connection._tasks if "refresh" in task.get_name())
    await conn.reply(second, "error", code="unauthorized", message="bad token")
    await asyncio.wait_for(refresh_task, 5)
    await roundtrip(conn)  # no further refresh was sent
    assert [type(exc) for exc in client.errors.items] == [RuntimeError, RealtimeError, RealtimeError]


async def test_a_refresh_from_an_old_connection_does_not_run_in_the_new_one(server, make_client):
    called, release, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()
    calls = []

    async def provider():
        calls.append(len(calls))
        if len(calls) == 2:  # the refresh of the first connection: hangs until released
            called.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return f"tok{len(calls)}"

    client = make_client(server.url, token=provider)
    conn, _ = await connect(server, client)
    await conn.send({"type": "expiring", "expires_at": 2_000_000_000})
    await asyncio.wait_for(called.wait(), 5)
    await conn.close(4011)
    conn2, auth = await reconnect(server, resumed=True)
    assert auth["token"] == "tok1"
    release.set()
    await asyncio.wait_for(cancelled.wait(), 5)  # the refresh ended with its connection
    await roundtrip(conn2)
    assert [frame["type"] for frame in conn2.received] == ["auth", "pong"]
    assert len(calls) == 2


async def test_expiring_with_a_fixed_token_is_only_logged(server, make_client, caplog):
    client = make_client(server.url, token="fixed")
    conn, _ = await connect(server, client)
    await conn.send({"type": "expiring", "expires_at": 2_000_000_000})
    await roundtrip(conn)
    assert "cannot be refreshed" in caplog.text


@pytest.mark.parametrize(
    ("error", "stops"), [(RuntimeError("vault down"), False), (RealtimeError("unauthorized", "gone"), True)]
)
async def test_4501_when_the_provider_raises(server, make_client, error, stops):
    client = make_client(server.url, token=Provider("tok1", error, "tok3"))
    conn, _ = await connect(server, client)
    await conn.close(4501)
    if stops:
        assert (await client.states.reach(C.CLOSED)).code == 4501
    else:  # a failed attempt: the next one asks the provider again
        _, auth = await reconnect(server)
        assert auth["token"] == "tok3"
