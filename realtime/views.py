"""The app's operational views, for the project's root URLconf.

    path("healthz", healthz),   # liveness and readiness (docs/operations.md "Health")
    path("metrics", metrics),   # Prometheus text, behind REALTIME["METRICS_TOKEN"] (docs/operations.md "Metrics")
"""

from realtime.http.health import healthz
from realtime.http.metrics import metrics_view as metrics

__all__ = ["healthz", "metrics"]
