"""URLs of the HTTP token API, mounted at /api/auth/."""

from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("token/", views.TokenObtainView.as_view(), name="token"),
    path("token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("token/verify/", views.TokenVerifyView.as_view(), name="token-verify"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
]
