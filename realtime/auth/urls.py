"""URLs of the token API (INTEGRATION.md section 4): `path("api/auth/", include("realtime.auth.urls"))`."""

from django.urls import path

from realtime.http import token_views as views

app_name = "realtime_auth"

urlpatterns = [
    path("token/", views.TokenObtainView.as_view(), name="token"),
    path("token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("token/verify/", views.TokenVerifyView.as_view(), name="token-verify"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
]
