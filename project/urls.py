"""Root URLs: the admin, the HTTP API and the health check."""

from django.contrib import admin
from django.urls import include, path

from .health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/realtime/", include("realtime.urls")),
    path("healthz", healthz, name="healthz"),
]
