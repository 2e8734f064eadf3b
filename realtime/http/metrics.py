"""`GET /metrics`: the Prometheus text of this process, or of every process of the host in multiprocess mode."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from realtime.support.conf import realtime_settings
from realtime.support.metrics import MULTIPROCESS, UNAUTHENTICATED_LIMIT


def registry():
    """What `/metrics` shows: this process's registry, or every process's files in multiprocess mode."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return REGISTRY


def _refusal(request: HttpRequest) -> JsonResponse | None:
    """None when the request may read the metrics, else the error response (PROTOCOL section 9)."""
    token = realtime_settings.METRICS_TOKEN
    if not token:
        if settings.DEBUG:
            return None
        message = "Metrics are off: set REALTIME['METRICS_TOKEN'] (or DEBUG, in development)."
        return JsonResponse({"code": "forbidden", "message": message}, status=403)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    response = JsonResponse(
        {"code": "unauthorized", "message": "Send the metrics token: `Authorization: Bearer <METRICS_TOKEN>`."},
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics`: the Prometheus text format (OpenMetrics when the scraper asks for it)."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"code": "method_not_allowed", "message": "Use GET."}, status=405)
        response["Allow"] = "GET, HEAD"
        return response
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    UNAUTHENTICATED_LIMIT.set(realtime_settings.MAX_UNAUTHENTICATED)  # a setting: read when asked, not counted
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encoder(registry()), content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
