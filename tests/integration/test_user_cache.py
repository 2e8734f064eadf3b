"""The sockets' user cache in one process (realtime/auth/cache.py): what it saves, and what it never lets through.

Across processes: tests/e2e/test_user_cache.py.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from realtime.auth import tokens
from realtime.auth.cache import user_cache
from realtime.engine import get_engine
from realtime.models import CredentialState
from tests.conftest import make_tokens, override_realtime
from tests.integration.test_api import closed_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def loads(monkeypatch):
    """How many times the user was read from the database (the real `load_user`, counted)."""
    calls = []
    real = tokens.load_user

    def counted(user_id):
        calls.append(user_id)
        return real(user_id)

    monkeypatch.setattr(tokens, "load_user", counted)
    return calls


async def connect_as(connect, access):
    socket = await connect(token=access)
    frame = await socket.recv_type("welcome")
    await socket.close()
    return frame


async def test_the_next_connects_of_a_user_read_no_database(engine, connect, user, loads):
    access, _ = await sync_to_async(make_tokens)(user)
    for _ in range(3):
        assert (await connect_as(connect, access))["user"]["id"] == user.pk
    assert loads == [str(user.pk)]  # the first connect only (the claim is text)
    assert str(user.pk) in user_cache().entries


@override_realtime(USER_CACHE_SECONDS=0)
async def test_without_the_cache_every_connect_reads_the_user(connect, user, loads):
    access, _ = await sync_to_async(make_tokens)(user)
    await connect_as(connect, access)  # the loop's first socket: it also re-checks its user once (switchboard)
    loads.clear()
    await connect_as(connect, access)
    await connect_as(connect, access)
    assert loads == [str(user.pk)] * 2


async def test_a_revocation_the_engine_records_refuses_a_cached_user_at_once(engine, connect, user, loads):
    access, _ = await sync_to_async(make_tokens)(user)
    await connect_as(connect, access)
    # As another process does at a logout: the engine first, the database after.
    from realtime.auth.revocation import revoke_credentials

    await sync_to_async(revoke_credentials)(user, "logout")
    refused = await connect(token=access)
    await refused.expect_disconnect(4501, "unauthorized")
    assert loads == [str(user.pk)] * 2  # the cached user was older than the revocation: read again
    fresh, _ = await sync_to_async(make_tokens)(user)
    assert (await connect_as(connect, fresh))["type"] == "welcome"


async def test_a_revocation_only_the_engine_knows_refuses_the_tokens_before_it(engine, connect, user):
    # (the database's write not committed yet, or lost): the engine's time alone refuses
    access, _ = await sync_to_async(make_tokens)(user)
    await connect_as(connect, access)
    from django.utils import timezone

    from realtime.models import unix_microseconds

    await get_engine().record_revocation(str(user.pk), unix_microseconds(timezone.now()))
    refused = await connect(token=access)
    await refused.expect_disconnect(4501, "unauthorized")


def test_a_revocation_the_engine_cannot_record_fails_whole(api_login, user, redis_prefix):
    access, refresh = make_tokens(user)
    client = api_login(user)
    with override_realtime(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", REDIS_PREFIX=redis_prefix):
        response = client.post("/api/auth/logout/", {"refresh": refresh}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    assert not CredentialState.objects.filter(user=user).exists()  # nothing revoked, nothing half-done


async def test_connects_of_one_user_at_the_same_moment_read_it_once(engine, connect, user, loads):
    access, _ = await sync_to_async(make_tokens)(user)
    sockets = await asyncio.gather(*(connect(token=access) for _ in range(5)))
    welcomes = await asyncio.gather(*(socket.recv_type("welcome") for socket in sockets))
    assert {frame["user"]["id"] for frame in welcomes} == {user.pk}
    assert loads == [str(user.pk)]
