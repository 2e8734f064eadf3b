"""`GET /metrics` (PROTOCOL section 9): who may read it, and that real traffic moves each metric by exactly what it did.

The metrics are the process's own, shared by every test: each test reads `/metrics`
before and after its traffic and compares the differences.
"""

from __future__ import annotations

import asyncio

import pytest
import redis
from asgiref.sync import sync_to_async
from django.test import AsyncClient, override_settings
from prometheus_client.parser import text_string_to_metric_families

from realtime.pubsub.publishing import publish
from realtime.support import metrics
from tests.conftest import make_tokens, override_realtime
from tests.integration.lossy import lossy_fanout
from tests.integration.test_socket_lifecycle import SlowClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-test-token"


class Moved(dict):
    """Differences between two scrapes; what did not move reads 0."""

    def __missing__(self, key) -> float:
        return 0.0


class Scrape:
    """The samples of one `/metrics` answer: `scrape["realtime_frames_sent_total", {"type": "pong"}]`."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __getitem__(self, key) -> float:
        name, labels = key if isinstance(key, tuple) else (key, {})
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def __sub__(self, before: Scrape) -> Moved:
        """What moved: `{(name, labels): difference}`, without the zeros and the `_created` timestamps."""
        keys = set(self.samples) | set(before.samples)
        moved = Moved()
        for key in keys:
            if key[0].endswith("_created") or key[0].startswith(("process_", "python_")):
                continue
            difference = self.samples.get(key, 0.0) - before.samples.get(key, 0.0)
            if difference:
                moved[key] = difference
        return moved


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


async def scrape() -> Scrape:
    with override_realtime(METRICS_TOKEN=TOKEN):
        response = await AsyncClient().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    return Scrape(response.content.decode())


def counts_only(moved: dict) -> dict:
    """The histograms' `_count`s and every counter and gauge; no `_sum` or `_bucket` (times vary)."""
    return {k: v for k, v in moved.items() if not k[0].endswith(("_sum", "_bucket"))}


# ---------------------------------------------------------------- who may read it


@override_settings(DEBUG=True)
@override_realtime(METRICS_TOKEN=TOKEN)
def test_a_configured_token_is_required_even_with_debug(client):
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert missing.json()["code"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.content.decode()
    assert "# TYPE realtime_connections_open gauge" in text
    assert "# TYPE realtime_request_duration_seconds histogram" in text
    assert "process_resident_memory_bytes" in text  # the process's own collectors, in single-process mode


@override_settings(DEBUG=True)
@override_realtime(METRICS_TOKEN="")
def test_without_a_token_debug_opens_it_to_anyone(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "realtime_frames_received_total" in response.content.decode()
    assert client.head("/metrics").status_code == 200


@override_settings(DEBUG=False)
@override_realtime(METRICS_TOKEN="")
def test_without_a_token_in_production_it_is_refused(client):
    response = client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "METRICS_TOKEN" in response.json()["message"]


@override_realtime(METRICS_TOKEN=TOKEN)
def test_only_get_and_openmetrics_on_request(client):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    refused = client.post("/metrics", headers=auth)
    assert refused.status_code == 405 and refused["Allow"] == "GET, HEAD"
    response = client.get("/metrics", headers={**auth, "Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_labels_are_bounded():
    assert metrics.close_code_label(4013) == "4013"
    assert metrics.close_code_label(1006) == "1006"
    assert metrics.close_code_label(3999) == "other"
    assert metrics.close_code_label(None) == "none"
    assert metrics.service_kind(redis.ConnectionError()) == "redis"
    assert metrics.service_kind(ConnectionRefusedError()) == "network"
    assert metrics.service_kind(ValueError()) is None


# ---------------------------------------------------------------- socket traffic


async def test_socket_traffic_moves_the_counters_by_exactly_what_it_did(backend, login, connect):
    before = await scrape()
    ann = await login("ann")  # the handshake's token: `welcome` pushed
    assert (await ann.request({"type": "ping", "id": 1}))["type"] == "pong"
    assert (await ann.request({"type": "presence", "id": 2, "channel": "public:lobby"}))["type"] == "presence"
    assert (await ann.request({"type": "history", "id": 3, "channel": "public:lobby"}))["type"] == "history"
    assert (await ann.request({"type": "unsubscribe", "id": 4, "channel": "public:lobby"}))["code"] == "not_subscribed"
    assert (await ann.request("not json"))["code"] == "bad_request"
    await ann.send(b"\x00binary")
    assert (await ann.recv())["code"] == "bad_request"

    anon = await connect()
    assert (await anon.request({"type": "history", "id": 5, "channel": "public:lobby"}))["code"] == "unauthorized"
    assert (await anon.request({"type": "auth", "id": 6, "token": "not-a-token"}))["code"] == "unauthorized"
    await anon.expect_disconnect(4501)
    during = await scrape()
    await anon.close()
    await ann.close()
    after = await scrape()

    assert during["realtime_connections_open"] - before["realtime_connections_open"] == 2
    assert counts_only(after - before) == {
        key("realtime_connections_accepted_total"): 2,
        key("realtime_disconnects_total", code="4501", initiator="server"): 1,
        key("realtime_disconnects_total", code="1000", initiator="client"): 1,
        # in
        key("realtime_frames_received_total", type="ping"): 1,
        key("realtime_frames_received_total", type="presence"): 1,
        key("realtime_frames_received_total", type="history"): 2,
        key("realtime_frames_received_total", type="unsubscribe"): 1,
        key("realtime_frames_received_total", type="auth"): 1,
        key("realtime_frames_received_total", type="other"): 2,
        # out
        key("realtime_frames_sent_total", type="welcome"): 1,
        key("realtime_frames_sent_total", type="pong"): 1,
        key("realtime_frames_sent_total", type="presence"): 1,
        key("realtime_frames_sent_total", type="history"): 1,
        key("realtime_frames_sent_total", type="error"): 5,
        key("realtime_frames_sent_total", type="disconnect"): 1,
        key("realtime_errors_total", code="not_subscribed", transport="ws"): 1,
        key("realtime_errors_total", code="bad_request", transport="ws"): 2,
        key("realtime_errors_total", code="unauthorized", transport="ws"): 2,
        # timed: every request past the authentication gate (not anon's history)
        key("realtime_request_duration_seconds_count", type="ping"): 1,
        key("realtime_request_duration_seconds_count", type="presence"): 1,
        key("realtime_request_duration_seconds_count", type="history"): 1,
        key("realtime_request_duration_seconds_count", type="unsubscribe"): 1,
        key("realtime_request_duration_seconds_count", type="auth"): 1,
    }
    moved = after - before
    assert moved[key("realtime_request_duration_seconds_sum", type="auth")] > 0
    assert moved[key("realtime_request_duration_seconds_bucket", type="ping", le="+Inf")] == 1


async def test_resumes_resumed_or_not(backend, login, connect):
    ann = await login("ann")
    await ann.communicator.disconnect(code=1006)  # lost, resumable
    before = await scrape()
    access, _ = await sync_to_async(make_tokens)(ann.user)
    again = await connect()
    welcome = await again.request({"type": "auth", "id": 1, "token": access, "resume": ann.welcome["session"]})
    assert welcome["resumed"] is True
    other = await connect()
    welcome = await other.request({"type": "auth", "id": 1, "token": access, "resume": "s_never_was"})
    assert welcome["resumed"] is False
    plain = await connect()
    assert (await plain.request({"type": "auth", "id": 1, "token": access}))["resumed"] is False
    moved = await scrape() - before
    assert moved[key("realtime_resumes_total", resumed="true")] == 1
    assert moved[key("realtime_resumes_total", resumed="false")] == 1
    assert moved[key("realtime_frames_received_total", type="auth")] == 3


async def test_a_lost_connection_counts_its_close_code(backend, login):
    before = await scrape()
    ann = await login("ann")
    await ann.communicator.disconnect(code=1006)
    moved = await scrape() - before
    assert moved[key("realtime_disconnects_total", code="1006", initiator="client")] == 1
    assert key("realtime_connections_open") not in moved


@override_realtime({"HEARTBEAT": 0.2, "HEARTBEAT_TIMEOUT": 5})
async def test_ping_round_trips(backend, login):
    ann = await login("ann")
    before = await scrape()
    for _ in range(2):
        await ann.recv_type("ping")
        await ann.send({"type": "pong"})
    await asyncio.sleep(0.05)  # the second pong handled
    await ann.close()
    moved = await scrape() - before
    assert moved[key("realtime_ping_rtt_seconds_count")] == 2
    assert 0 < moved[key("realtime_ping_rtt_seconds_sum")] < 5
    assert moved[key("realtime_frames_received_total", type="pong")] == 2
    assert moved[key("realtime_frames_sent_total", type="ping")] >= 2


@override_realtime({"SEND_QUEUE_BYTES": 2048, "RATE_BURST": 1000, "RATE": 1000})
async def test_a_slow_client_cut_off_is_counted_once(connect, ws_app, user):
    slow = SlowClient(ws_app)
    access, _ = await sync_to_async(make_tokens)(user)
    socket = await connect(token=access, app=slow)
    await socket.recv_type("welcome")
    before = await scrape()
    slow.reading.clear()
    for i in range(200):  # ~25 bytes of pong each: 5 kB, over twice the queue
        await socket.send({"type": "ping", "id": i})
    await slow.handled(201)
    slow.reading.set()
    while (await socket.communicator.receive_output(5))["type"] != "websocket.close":
        pass
    await socket.close()
    moved = await scrape() - before
    assert moved[key("realtime_slow_client_cutoffs_total")] == 1
    assert moved[key("realtime_disconnects_total", code="4013", initiator="server")] == 1
    assert moved[key("realtime_frames_sent_total", type="disconnect")] == 1
    # Every ping handled before the cut-off was answered (its pong counted when queued); none after it.
    pings = moved[key("realtime_frames_received_total", type="ping")]
    assert 0 < pings < 200
    assert moved[key("realtime_frames_sent_total", type="pong")] == pings


# ---------------------------------------------------------------- HTTP API


def test_http_api_errors_by_code(api, api_login, make_user, monkeypatch):
    with override_realtime(METRICS_TOKEN=TOKEN):
        read = lambda: Scrape(api.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())  # noqa: E731
        before = read()
    assert api.post("/api/realtime/publish/", {"channel": "public:x", "data": 1}, format="json").status_code == 401
    staff = api_login(make_user("boss", is_staff=True))
    assert staff.get("/api/realtime/channels/nope:x/history/").status_code == 404

    def redis_down(*args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr("realtime.http.api.publish_sync", redis_down)
    assert staff.post("/api/realtime/publish/", {"channel": "public:x", "data": 1}, format="json").status_code == 503
    api.credentials()
    with override_realtime(METRICS_TOKEN=TOKEN):
        moved = read() - before
    assert moved == {
        key("realtime_errors_total", code="unauthorized", transport="http"): 1,
        key("realtime_errors_total", code="unknown_namespace", transport="http"): 1,
        key("realtime_errors_total", code="unavailable", transport="http"): 1,
        key("realtime_service_errors_total", service="redis"): 1,
    }


# ---------------------------------------------------------------- publications and deliveries
# Counted in realtime.pubsub.publishing and realtime.socket.subscriptions, by the calls named in
# realtime/support/metrics.py.
CALLS = "realtime.pubsub.publishing / realtime.socket.subscriptions must call realtime.support.metrics.{}"


async def test_publications_deliveries_and_publish_to_send_latency(backend, login):
    ann = await login("ann")
    bob = await login("bob")
    assert (await ann.request({"type": "subscribe", "id": 1, "channel": "public:m"}))["type"] == "subscribed"
    before = await scrape()
    for i in range(3):
        reply = await bob.request({"type": "publish", "id": i, "channel": "public:m", "data": i})
        assert reply["type"] == "published"
    await publish("public:m", "from the server")
    for i in range(4):
        assert (await ann.recv_type("message"))["offset"] == i + 1
    moved = await scrape() - before
    assert moved[key("realtime_publications_total")] == 4, CALLS.format("published()")
    assert moved[key("realtime_deliveries_total")] == 4, CALLS.format("delivered(count, ts)")
    assert moved[key("realtime_frames_sent_total", type="message")] == 4
    assert moved[key("realtime_frames_received_total", type="publish")] == 3
    assert moved[key("realtime_frames_sent_total", type="published")] == 3
    assert moved[key("realtime_publish_to_send_seconds_count")] == 4, CALLS.format("delivered(count, ts)")
    assert 0 <= moved[key("realtime_publish_to_send_seconds_sum")] < 4 * 5


async def test_recoveries_recovered_or_not(backend, login):
    ann = await login("ann")
    subscribed = await ann.request({"type": "subscribe", "id": 1, "channel": "public:rec"})
    epoch, offset = subscribed["epoch"], subscribed["offset"]
    await ann.request({"type": "unsubscribe", "id": 2, "channel": "public:rec"})
    await publish("public:rec", "a")
    await publish("public:rec", "b")
    before = await scrape()
    replayed = []
    for rid, position, recovered in (
        (3, {"epoch": epoch, "offset": offset}, True),  # two missed: recovered, with publications
        (5, {"epoch": epoch, "offset": offset + 2}, True),  # nothing missed: recovered, none
        (7, {"epoch": "not-the-epoch", "offset": 0}, False),  # another epoch: not recovered
    ):
        frame = await ann.request({"type": "subscribe", "id": rid, "channel": "public:rec", "recover": position})
        assert (frame["type"], frame["recovered"]) == ("subscribed", recovered), frame
        replayed.append(len(frame["publications"]))
        await ann.request({"type": "unsubscribe", "id": rid + 1, "channel": "public:rec"})
    assert replayed[:2] == [2, 0]
    moved = await scrape() - before
    recovery = CALLS.format("recovery(recovered, publications)")
    assert moved[key("realtime_recoveries_total", recovered="true", publications="true")] == 1, recovery
    assert moved[key("realtime_recoveries_total", recovered="true", publications="false")] == 1, recovery
    assert (
        moved[key("realtime_recoveries_total", recovered="false", publications="true")]
        + moved[key("realtime_recoveries_total", recovered="false", publications="false")]
    ) == 1, recovery
    assert moved[key("realtime_recovered_publications_total")] == sum(replayed), recovery
    assert moved[key("realtime_frames_sent_total", type="subscribed")] == 3, CALLS.format('sent("subscribed")')


async def test_gaps_filled_from_history(login):
    with lossy_fanout({2, 3, 5}):
        ann = await login()
        await ann.request({"type": "subscribe", "id": 1, "channel": "public:gaps"})
        before = await scrape()
        received = []
        for published, arrive in ((1, 1), (2, 0), (3, 0), (4, 3), (5, 0), (6, 2)):  # each gap seen before the next
            await publish("public:gaps", published)
            received += [(await ann.recv_type("message"))["offset"] for _ in range(arrive)]
    assert received == [1, 2, 3, 4, 5, 6]
    moved = await scrape() - before
    assert moved[key("realtime_gaps_total", filled="true")] == 2, CALLS.format("gap(filled)")  # at 4 and at 6
    assert moved[key("realtime_deliveries_total")] == 6
    assert moved[key("realtime_publications_total")] == 6
