"""INTEGRATION.md section 7: a namespace rule may be a plain (sync) function that uses the ORM.

The rules below are named by dotted path in `REALTIME["NAMESPACES"]`, as a project names its
own; they query the database synchronously, which Django refuses on the event loop, so a
reply at all shows that they ran off it."""

import asyncio
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

from realtime.models import Room
from realtime.namespaces import namespaces
from realtime.support.conf import DEFAULT_NAMESPACES
from tests import rules as bad_rules
from tests.conftest import override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CALLS: list[tuple[str, str, str, int]] = []  # (rule, username, channel name, thread) per call


def club_member(user, name: str) -> bool:
    """Subscribe: members of the `Room` whose slug is the channel name, by a sync query."""
    CALLS.append(("subscribe", user.username, name, threading.get_ident()))
    return Room.objects.filter(slug=name, members=user).exists()


def staff_writer(user, name: str) -> bool:
    """Publish: users whose `is_staff` the database says is set (read again, not from `user`)."""
    CALLS.append(("publish", user.username, name, threading.get_ident()))
    return get_user_model().objects.filter(pk=user.pk, is_staff=True).exists()


CLUB = {
    **DEFAULT_NAMESPACES,
    "club": {"subscribe": f"{__name__}.club_member", "publish": f"{__name__}.staff_writer"},
}


@pytest.fixture(autouse=True)
def club_namespace():
    CALLS.clear()
    with override_realtime({"NAMESPACES": CLUB}):
        yield
    CALLS.clear()


async def make_club(slug: str, *users) -> Room:
    room = await Room.objects.acreate(slug=slug, name=slug.title())
    await room.members.aadd(*users)
    return room


async def test_a_sync_rule_decides_subscribe_off_the_event_loop(backend, login):
    ann, bob = await login("ann"), await login("bob")
    await make_club("chess", ann.user)
    reply = await ann.request({"type": "subscribe", "id": 1, "channel": "club:chess"})
    assert reply["type"] == "subscribed", reply
    refused = await bob.request({"type": "subscribe", "id": 2, "channel": "club:chess"})
    assert refused["type"] == "error" and refused["code"] == "permission_denied", refused
    assert [(rule, who, name) for rule, who, name, _ in CALLS] == [
        ("subscribe", "ann", "chess"),
        ("subscribe", "bob", "chess"),
    ]
    assert threading.get_ident() not in {thread for *_, thread in CALLS}


async def make_staff(username: str) -> None:
    await get_user_model().objects.filter(username=username).aupdate(is_staff=True)


async def test_a_sync_rule_decides_publish(backend, login):
    ann, bob = await login("ann"), await login("bob")
    await make_staff("ann")
    await make_club("chess", ann.user, bob.user)
    for socket in (ann, bob):
        assert (await socket.request({"type": "subscribe", "id": 1, "channel": "club:chess"}))["type"] == "subscribed"
    published = await ann.request({"type": "publish", "id": 2, "channel": "club:chess", "data": "e4"})
    assert published["type"] == "published", published
    assert (await bob.recv_type("message"))["data"] == "e4"
    refused = await bob.request({"type": "publish", "id": 3, "channel": "club:chess", "data": "e5"})
    assert refused["type"] == "error" and refused["code"] == "permission_denied", refused
    assert ("publish", "bob", "chess") in [(rule, who, name) for rule, who, name, _ in CALLS]


async def test_the_publish_rule_runs_once_per_connection_and_channel(backend, login):
    first = await login("ann")
    await make_staff("ann")
    await make_club("chess", first.user)
    await make_club("go", first.user)
    for n in range(3):
        reply = await first.request({"type": "publish", "id": n, "channel": "club:chess", "data": n})
        assert reply["type"] == "published", reply
    assert (await first.request({"type": "publish", "id": 9, "channel": "club:go", "data": 0}))["type"] == "published"
    second = await login("ann")
    assert (await second.request({"type": "publish", "id": 1, "channel": "club:chess", "data": 3}))["type"] == (
        "published"
    )
    assert [(rule, name) for rule, _, name, _ in CALLS] == [
        ("publish", "chess"),
        ("publish", "go"),
        ("publish", "chess"),
    ]


def returns_a_coroutine(user, name: str):
    """A plain function around an async one: its coroutine must never count as a yes."""
    CALLS.append(("subscribe", user.username, name, threading.get_ident()))
    return asyncio.sleep(0, result=True)


async def test_a_plain_rule_that_returns_an_awaitable_grants_nothing(login):
    namespaces_ = {**CLUB, "club": {"subscribe": f"{__name__}.returns_a_coroutine"}}
    with override_realtime({"NAMESPACES": namespaces_}):
        ann = await login("ann")
        reply = await ann.request({"type": "subscribe", "id": 1, "channel": "club:chess"})
    assert reply["type"] == "disconnect" and reply["reason"] == "internal_error", reply
    assert [rule for rule, *_ in CALLS] == ["subscribe"]


@pytest.mark.parametrize("rule", bad_rules.NOT_FUNCTIONS)
def test_a_rule_that_is_not_a_function_is_refused_naming_it(rule):
    # (`manage.py check` and the server's start report it as realtime.E003: tests/unit/test_checks.py)
    path = f"{bad_rules.__name__}.{rule}"
    with override_realtime({"NAMESPACES": {"public": {"subscribe": path}}}):
        with pytest.raises(
            ImproperlyConfigured,
            match=rf"NAMESPACES\['public'\]\['subscribe'\]: '{path}' is not a function",
        ):
            namespaces()
    assert namespaces()["club"].subscribe is not None  # the settings in force still load
