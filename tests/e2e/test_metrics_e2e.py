"""`GET /metrics` of real daphne processes, read over HTTP after real socket traffic.

Each process answers for itself (scraped on its own); with `PROMETHEUS_MULTIPROC_DIR`
set, any process of the directory answers for all of them.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.e2e]

TOKEN = "e2e-metrics-token"
POLL_LIMIT = 20.0  # a bound on waiting for the server to finish a close; never a measurement


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(server, token: str | None = TOKEN) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        response = await http.get(f"{server.url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


async def scrape_until(server, predicate) -> dict:
    """Scrape until `predicate(samples)` holds (a close is recorded after the client saw it)."""
    deadline = time.monotonic() + POLL_LIMIT
    while True:
        samples = await scrape(server)
        if predicate(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_metrics_of_one_process_after_socket_traffic(servers, ws, new_user, tokens):
    (server,) = await servers(1, METRICS_TOKEN=TOKEN)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        missing = await http.get(f"{server.url}/metrics")
        wrong = await http.get(f"{server.url}/metrics", headers={"Authorization": "Bearer nope"})
    assert (missing.status_code, missing.json()["code"]) == (401, "unauthorized")
    assert missing.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert wrong.status_code == 401

    before = await scrape(server)
    assert value(before, "realtime_connections_open") == 0
    ann, bob = await new_user("ann"), await new_user("bob")
    a = await ws(server, token=(await tokens(ann))[0], welcome=True)
    b = await ws(server, token=(await tokens(bob))[0], welcome=True)
    await a.ping(1)
    assert (await b.request({"type": "nope", "id": 2}))["code"] == "bad_request"
    assert (await b.request({"type": "history", "id": 3, "channel": "public:e2e"}))["type"] == "history"
    during = await scrape(server)
    await a.close()
    await b.close()
    after = await scrape_until(server, lambda s: value(s, "realtime_connections_open") == 0)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(during, "realtime_connections_open") == 2
    assert value(after, "realtime_connections_open") == 0
    assert moved("realtime_connections_accepted_total") == 2
    assert moved("realtime_disconnects_total", code="1000", initiator="client") == 2
    assert moved("realtime_frames_sent_total", type="welcome") == 2
    assert moved("realtime_frames_received_total", type="ping") == 1
    assert moved("realtime_frames_sent_total", type="pong") == 1
    assert moved("realtime_frames_received_total", type="other") == 1
    assert moved("realtime_errors_total", code="bad_request", transport="ws") == 1
    assert moved("realtime_frames_received_total", type="history") == 1
    assert moved("realtime_frames_sent_total", type="history") == 1
    assert moved("realtime_request_duration_seconds_count", type="history") == 1
    assert moved("realtime_request_duration_seconds_count", type="ping") == 1
    assert value(after, "process_resident_memory_bytes") > 0


async def test_each_process_counts_its_own_publications_and_deliveries(servers, ws, new_user, tokens):
    """A publication on one process, delivered on the other: each process's `/metrics` shows its side."""
    publisher_server, subscriber_server = await servers(2, METRICS_TOKEN=TOKEN)
    ann, bob = await new_user("ann"), await new_user("bob")
    subscriber = await ws(subscriber_server, token=(await tokens(ann))[0], welcome=True)
    publisher = await ws(publisher_server, token=(await tokens(bob))[0], welcome=True)
    assert (await subscriber.request({"type": "subscribe", "id": 1, "channel": "public:x"}))["type"] == "subscribed"
    pub_before, sub_before = await scrape(publisher_server), await scrape(subscriber_server)
    for i in range(5):
        assert (await publisher.request({"type": "publish", "id": i, "channel": "public:x", "data": i}))["type"] == (
            "published"
        )
    received = []
    while len(received) < 5:
        frame = await subscriber.recv()
        assert frame["type"] in ("message", "join", "ping"), frame  # its own `join` aside
        if frame["type"] == "message":
            received.append(frame["data"])
    assert received == list(range(5))
    pub_after, sub_after = await scrape(publisher_server), await scrape(subscriber_server)

    def moved(after, before, name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "publishing and subscriptions must call realtime.support.metrics.published() and .delivered()"
    assert moved(pub_after, pub_before, "realtime_publications_total") == 5, calls
    assert moved(pub_after, pub_before, "realtime_deliveries_total") == 0
    assert moved(sub_after, sub_before, "realtime_publications_total") == 0
    assert moved(sub_after, sub_before, "realtime_deliveries_total") == 5, calls
    assert moved(sub_after, sub_before, "realtime_frames_sent_total", type="message") == 5
    assert moved(sub_after, sub_before, "realtime_publish_to_send_seconds_count") == 5
    # Both processes' clocks are this machine's: the lag is real and small, never negative.
    assert 0 <= moved(sub_after, sub_before, "realtime_publish_to_send_seconds_sum") < 5 * 5


async def test_multiprocess_mode_answers_for_every_process_of_the_directory(servers, ws, new_user, tokens, tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    first, second = await servers(2, METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=directory)
    ann = await new_user("ann")
    access = (await tokens(ann))[0]
    clients = [await ws(first, token=access, welcome=True)]
    clients += [await ws(second, token=access, welcome=True) for _ in range(2)]
    for client in clients:
        await client.ping()
    seen_by_first, seen_by_second = await scrape(first), await scrape(second)
    for samples in (seen_by_first, seen_by_second):
        assert value(samples, "realtime_connections_open") == 3
        assert value(samples, "realtime_connections_accepted_total") == 3
        assert value(samples, "realtime_frames_received_total", type="ping") == 3
        assert value(samples, "realtime_request_duration_seconds_count", type="ping") == 3
        assert "process_resident_memory_bytes" not in {name for name, _ in samples}  # per-process only
    for client in clients:
        await client.close()
    after = await scrape_until(first, lambda s: value(s, "realtime_connections_open") == 0)
    assert value(after, "realtime_connections_open") == 0
    assert value(after, "realtime_disconnects_total", code="1000", initiator="client") == 3
