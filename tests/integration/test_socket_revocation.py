"""Revocation reaches live sockets: logout, deactivation, password change, deletion, admin actions."""

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from realtime.core.protocol import CloseCode
from realtime.engine import get_engine
from realtime.engine.redis import RedisEngine
from realtime.models import Connection
from realtime.sessions import rows as sessions
from realtime.sessions.control import disconnect_channels, disconnect_user
from tests.conftest import make_tokens

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def open_authed(connect, user):
    access, refresh = await sync_to_async(make_tokens)(user)
    socket = await connect(token=access)
    socket.welcome = await socket.recv_type("welcome")
    socket.refresh_token = refresh
    socket.access_token = access
    return socket


def logout(access: str, refresh: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.post("/api/auth/logout/", {"refresh": refresh}, format="json").status_code


async def test_logout_disconnects_every_socket_of_the_user(connect, user, make_user):
    first = await open_authed(connect, user)
    second = await open_authed(connect, user)
    bystander = await open_authed(connect, await sync_to_async(make_user)("bob"))
    assert await sync_to_async(logout)(first.access_token, first.refresh_token) == 204
    for socket in (first, second):
        frame = await socket.expect_disconnect(4503, "forbidden")
        assert frame["reconnect"] is False
    assert await bystander.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}


async def test_a_revoked_token_cannot_reconnect(connect, user):
    refresh = await sync_to_async(RefreshToken.for_user)(user)
    access = refresh.access_token
    # issued a few seconds ago: JWT times have whole-second resolution
    access.set_iat(at_time=datetime.now(UTC) - timedelta(seconds=5))
    socket = await connect(token=str(access))
    await socket.recv_type("welcome")
    assert await sync_to_async(logout)(str(access), str(refresh)) == 204
    await socket.expect_disconnect(4503)
    again = await connect(token=str(access))
    await again.expect_disconnect(4501)


async def test_deactivation_disconnects(connect, user):
    socket = await open_authed(connect, user)
    user.is_active = False
    await user.asave()
    await socket.expect_disconnect(4503)


async def test_password_change_disconnects(connect, user):
    socket = await open_authed(connect, user)
    user.set_password("a-new-password-2")
    await user.asave()
    await socket.expect_disconnect(4503)


async def test_deletion_disconnects(connect, make_user):
    doomed = await sync_to_async(make_user)("doomed")
    socket = await open_authed(connect, doomed)
    await get_user_model().objects.filter(pk=doomed.pk).adelete()
    await socket.expect_disconnect(4503)


async def test_unrelated_saves_do_not_disconnect(connect, user):
    socket = await open_authed(connect, user)
    user.first_name = "Ann"
    await user.asave()
    assert await socket.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}


@pytest.mark.parametrize(
    ("code", "reason"), [(CloseCode.FORBIDDEN, "forbidden"), (CloseCode.FORCE_RECONNECT, "force_reconnect")]
)
async def test_admin_events_reach_the_socket_by_its_channel_name(connect, user, code, reason):
    socket = await open_authed(connect, user)
    other = await open_authed(connect, user)
    await sessions.flush()  # the row is written in the background
    row = await Connection.objects.aget(session_id=socket.welcome["session"])
    assert await disconnect_channels([row.channel_name, row.channel_name], code) == 1  # one socket, told once
    frame = await socket.expect_disconnect(int(code), reason)
    assert frame["reconnect"] is code.reconnect
    assert await other.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
    await socket.close()
    row = await Connection.objects.aget(session_id=socket.welcome["session"])
    assert (row.close_code, row.close_reason) == (int(code), reason)


async def test_revocation_over_redis(connect, user, redis_layer):
    socket = await open_authed(connect, user)
    assert isinstance(get_engine(), RedisEngine)  # the control event travels through Redis's fan-out
    await disconnect_user(user.pk, CloseCode.FORBIDDEN)
    await socket.expect_disconnect(4503)
