"""Root URLs of the reference deployment: the demo page, the admin, the app's APIs, health and metrics."""

from django.contrib import admin
from django.urls import include, path

from accounts.demo import demo
from realtime.views import healthz, metrics

urlpatterns = [
    path("", demo, name="demo"),
    path("admin/", admin.site.urls),
    path("api/auth/", include("realtime.auth.urls")),
    path("api/realtime/", include("realtime.urls")),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
]
