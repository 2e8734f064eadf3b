"""`/healthz` both ways, the admin pages, and the demo data command."""

import socket

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.exceptions import APIException

from realtime.http.errors import HTTP_ERROR_CODES, exception_handler
from realtime.models import Room
from tests.conftest import override_realtime

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_ok_with_the_embedded_layer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channel_layer": "ok", "sockets": "ok"}


def test_healthz_ok_with_redis(client, redis_layer):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channel_layer": "ok", "sockets": "ok"}


def test_healthz_503_when_redis_is_unreachable(client, redis_prefix):
    with override_realtime(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", REDIS_PREFIX=redis_prefix):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["channel_layer"].startswith("error")


def test_admin_login_page_renders(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_admin_room_pages(client):
    call_command("demo_data")
    client.login(username="admin", password="admin-pass-123")
    changelist = client.get("/admin/realtime/room/")
    assert changelist.status_code == 200
    assert b"Kitchen" in changelist.content
    room = Room.objects.get(slug="kitchen")
    assert client.get(f"/admin/realtime/room/{room.pk}/change/").status_code == 200


def test_demo_data_is_idempotent(capsys):
    call_command("demo_data")
    call_command("demo_data")
    User = get_user_model()
    assert User.objects.filter(username__in=["alice", "bob", "carol", "admin"]).count() == 4
    assert User.objects.get(username="admin").is_staff
    assert User.objects.get(username="alice").check_password("demo-pass-123")
    room = Room.objects.get(slug="kitchen")
    assert sorted(room.members.values_list("username", flat=True)) == ["alice", "bob"]
    assert "room:kitchen" in capsys.readouterr().out


def test_demo_data_restores_a_changed_password():
    call_command("demo_data")
    alice = get_user_model().objects.get(username="alice")
    alice.set_password("changed")
    alice.is_active = False
    alice.save()
    call_command("demo_data")
    alice.refresh_from_db()
    assert alice.is_active and alice.check_password("demo-pass-123")


def test_unexpected_errors_become_internal_without_details(caplog):
    response = exception_handler(RuntimeError("secret detail"), {"view": None})
    assert response.status_code == 500
    assert response.data["code"] == "internal"
    assert "secret detail" not in response.data["message"]
    assert "ref" in response.data["message"]
    assert "secret detail" in caplog.text


def test_unknown_api_exception_keeps_its_status():
    class Teapot(APIException):
        status_code = 418

    response = exception_handler(Teapot("short and stout"), {})
    assert response.status_code == 418
    assert response.data == {"code": "internal", "message": "short and stout"}


def test_http_codes_are_protocol_codes():
    from realtime.core.protocol import ErrorCode

    extra = {"not_found", "method_not_allowed"}  # HTTP-only codes, documented in docs/protocol.md
    assert HTTP_ERROR_CODES - extra <= {code.value for code in ErrorCode}
