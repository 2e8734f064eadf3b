"""Root URLs: the demo page, the admin, the HTTP API, the health check and the metrics."""

from django.contrib import admin
from django.urls import include, path

from realtime.metrics import metrics_view
from realtime.views import demo

from .health import healthz

urlpatterns = [
    path("", demo, name="demo"),
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/realtime/", include("realtime.urls")),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
]
