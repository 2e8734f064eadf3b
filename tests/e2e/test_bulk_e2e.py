"""A bulk deactivation made in the test process (on the servers' Redis and database) reaches the sockets on
a real daphne process. (A queryset delete of room memberships: tests/e2e/test_channels.py, rooms.)"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from realtime.auth.bulk import deactivate

pytestmark = [pytest.mark.e2e]


async def test_a_bulk_deactivation_closes_the_users_sockets_on_a_server(servers, ws, new_user, tokens, redis_layer):
    (server,) = await servers(1)
    ann, bob, carol = await new_user("ann"), await new_user("bob"), await new_user("carol")
    doomed = [await ws(server, token=(await tokens(user))[0], welcome=True) for user in (ann, bob)]
    bystander = await ws(server, token=(await tokens(carol))[0], welcome=True)

    users = get_user_model().objects.filter(pk__in=[ann.pk, bob.pk])
    assert await sync_to_async(deactivate)(users) == 2

    for client in doomed:
        frame = await client.expect_disconnect(4503, "forbidden")
        assert frame["reconnect"] is False
    await bystander.ping("bystander")

