"""The HTTP token API: obtain, refresh with rotation, verify, logout."""

from datetime import timedelta

import pytest
from django.contrib.auth.signals import user_logged_out
from rest_framework.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from realtime.auth.drf import JWTAuthentication
from realtime.auth.revocation import revoke_credentials
from realtime.auth.tokens import PreciseAccessToken, PreciseRefreshToken
from tests.conftest import PASSWORD, make_tokens

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TOKEN = "/api/auth/token/"
REFRESH = "/api/auth/token/refresh/"
VERIFY = "/api/auth/token/verify/"
LOGOUT = "/api/auth/logout/"


def obtain(api, username="ann", password=PASSWORD):
    return api.post(TOKEN, {"username": username, "password": password}, format="json")


def test_obtain_returns_a_pair_for_the_user(api, user):
    response = obtain(api)
    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == str(user.pk)
    assert RefreshToken(response.json()["refresh"])["user_id"] == str(user.pk)


@pytest.mark.parametrize(("username", "password"), [("ann", "wrong"), ("nobody", PASSWORD)])
def test_obtain_with_bad_credentials_is_401(api, user, username, password):
    response = obtain(api, username, password)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert "access" not in response.json()


def test_obtain_for_an_inactive_user_is_401(api, make_user):
    make_user("ann", is_active=False)
    response = obtain(api)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("[]", "application/json"),
        ('{"username": "ann"}', "application/json"),
        ('{"username": ["ann"], "password": 5}', "application/json"),
    ],
)
def test_obtain_with_a_malformed_body_is_400(api, user, body, content_type):
    response = api.post(TOKEN, body, content_type=content_type)
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert response.json()["message"]


def test_missing_fields_are_named(api):
    response = api.post(TOKEN, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"username", "password"}


def test_unsupported_media_type_is_bad_request(api):
    response = api.post(TOKEN, "<xml/>", content_type="application/xml")
    assert response.status_code == 415
    assert response.json()["code"] == "bad_request"


def test_wrong_method_is_405(api):
    response = api.get(TOKEN)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_refresh_rotates_and_blacklists_the_old_token(api, user):
    first = obtain(api).json()
    response = api.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert response.status_code == 200
    second = response.json()
    assert second["refresh"] != first["refresh"]
    assert AccessToken(second["access"])["user_id"] == str(user.pk)

    reused = api.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert reused.status_code == 401
    assert reused.json()["code"] == "unauthorized"
    # the rotated token keeps working
    assert api.post(REFRESH, {"refresh": second["refresh"]}, format="json").status_code == 200


@pytest.mark.parametrize("body", [{"refresh": "garbage"}, {}, {"refresh": ""}])
def test_refresh_with_a_bad_token(api, body):
    response = api.post(REFRESH, body, format="json")
    assert response.status_code in (400, 401)
    assert response.json()["code"] == ("bad_request" if response.status_code == 400 else "unauthorized")


def test_refresh_with_an_access_token_is_401(api, user):
    access, _ = make_tokens(user)
    response = api.post(REFRESH, {"refresh": access}, format="json")
    assert response.status_code == 401


def test_verify(api, user):
    access, _ = make_tokens(user)
    assert api.post(VERIFY, {"token": access}, format="json").status_code == 200
    bad = api.post(VERIFY, {"token": access[:-4] + "abcd"}, format="json")
    assert bad.status_code == 401
    assert bad.json()["code"] == "unauthorized"


def test_logout_blacklists_and_signals(api, user):
    access, refresh = make_tokens(user)
    seen = []

    def receiver(sender, user, **kwargs):
        seen.append(user.pk)

    user_logged_out.connect(receiver)
    try:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        response = api.post(LOGOUT, {"refresh": refresh}, format="json")
    finally:
        user_logged_out.disconnect(receiver)
    assert response.status_code == 204
    assert seen == [user.pk]
    api.credentials()
    assert api.post(REFRESH, {"refresh": refresh}, format="json").status_code == 401


def test_logout_all_blacklists_every_refresh_token(api, user):
    access, refresh = make_tokens(user)
    _, other_refresh = make_tokens(user)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert api.post(LOGOUT, {"refresh": refresh, "all": True}, format="json").status_code == 204
    api.credentials()
    assert api.post(REFRESH, {"refresh": other_refresh}, format="json").status_code == 401


def test_logout_needs_authentication(api, user):
    _, refresh = make_tokens(user)
    response = api.post(LOGOUT, {"refresh": refresh}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_logout_with_another_users_token_is_403(api, user, make_user):
    access, _ = make_tokens(user)
    _, foreign = make_tokens(make_user("bob"))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    response = api.post(LOGOUT, {"refresh": foreign}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    api.credentials()
    assert api.post(REFRESH, {"refresh": foreign}, format="json").status_code == 200


@pytest.mark.parametrize(("body", "status"), [({}, 400), ({"refresh": "nope"}, 401), ({"refresh": 1, "all": "x"}, 400)])
def test_logout_with_a_bad_body(api, user, body, status):
    access, _ = make_tokens(user)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    response = api.post(LOGOUT, body, format="json")
    assert response.status_code == status


def test_expired_access_token_is_401(api, user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api.post(LOGOUT, {"refresh": "x"}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


# Revocation over HTTP: realtime.auth.drf.JWTAuthentication rejects what the socket rejects.


def authenticated_post(api, access: str):
    """A logout with an empty body: 400 once authenticated, 401 when the token is refused."""
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return api.post(LOGOUT, {}, format="json")


def test_the_api_authenticates_with_the_revocation_aware_class():
    assert api_settings.DEFAULT_AUTHENTICATION_CLASSES[0] is JWTAuthentication


@pytest.mark.parametrize("token_class", [AccessToken, PreciseAccessToken])
def test_a_token_issued_before_a_revocation_is_401(api, user, token_class):
    old = str(token_class.for_user(user))
    assert authenticated_post(api, old).status_code == 400
    revoke_credentials(user, "password_changed")
    response = authenticated_post(api, old)
    assert response.status_code == 401
    assert response.json() == {"code": "unauthorized", "message": "The token was revoked."}


def test_logout_revokes_the_users_access_tokens_and_logging_in_again_works(api, user):
    old = obtain(api).json()["access"]
    access, refresh = make_tokens(user)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert api.post(LOGOUT, {"refresh": refresh}, format="json").status_code == 204
    assert authenticated_post(api, old).status_code == 401
    api.credentials()
    fresh = obtain(api).json()  # most likely in the same second as the logout
    assert authenticated_post(api, fresh["access"]).status_code == 400
    api.credentials()
    refreshed = api.post(REFRESH, {"refresh": fresh["refresh"]}, format="json").json()
    assert authenticated_post(api, refreshed["access"]).status_code == 400


def test_the_endpoints_stamp_access_tokens_to_the_microsecond(api, user):
    first = obtain(api).json()
    refreshed = api.post(REFRESH, {"refresh": first["refresh"]}, format="json").json()
    for pair in (first, refreshed):
        access = AccessToken(pair["access"])
        assert access["iat_us"] // 1_000_000 == access["iat"]
    for pair in (first, refreshed):  # refresh tokens too (a revocation of refresh tokens in the same second)
        refresh = RefreshToken(pair["refresh"], verify=False)  # (the first one is blacklisted by the rotation)
        assert refresh["iat_us"] // 1_000_000 == refresh["iat"]
    assert AccessToken(refreshed["access"])["iat_us"] > AccessToken(first["access"])["iat_us"]


def test_a_token_of_an_inactive_user_is_401(api, make_user):
    access = str(AccessToken.for_user(make_user("bob", is_active=False)))
    response = authenticated_post(api, access)
    assert response.status_code == 401
    assert response.json()["message"] == "The token's user is inactive."


def test_a_token_of_a_deleted_user_is_401(api, user):
    access = str(AccessToken.for_user(user))
    user.delete()
    assert authenticated_post(api, access).status_code == 401


def test_refreshing_a_token_of_a_deleted_user_is_401(api, user):
    refresh = obtain(api).json()["refresh"]
    user.delete()
    response = api.post(REFRESH, {"refresh": refresh}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


# ---------------------------------------------------------------- refresh tokens end with the sessions


def test_a_password_change_ends_every_refresh_token_and_rotation_cannot_outlive_it(api, user):
    first = obtain(api).json()
    rotated = api.post(REFRESH, {"refresh": first["refresh"]}, format="json").json()  # a chain of rotations
    user.set_password("a new password 9")
    user.save()
    for old in (first["refresh"], rotated["refresh"]):
        response = api.post(REFRESH, {"refresh": old}, format="json")
        assert response.status_code == 401, response.json()
        assert response.json()["code"] == "unauthorized"
    fresh = obtain(api, password="a new password 9").json()  # most likely in the same second
    assert api.post(REFRESH, {"refresh": fresh["refresh"]}, format="json").status_code == 200


def test_a_deactivation_ends_every_refresh_token(api, user):
    refresh = obtain(api).json()["refresh"]
    user.is_active = False
    user.save()
    assert api.post(REFRESH, {"refresh": refresh}, format="json").status_code == 401


def test_a_logout_of_one_device_leaves_the_other_devices_refresh_tokens_working(api, user):
    phone = obtain(api).json()
    laptop = obtain(api).json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {phone['access']}")
    assert api.post(LOGOUT, {"refresh": phone["refresh"]}, format="json").status_code == 204
    api.credentials()
    assert api.post(REFRESH, {"refresh": phone["refresh"]}, format="json").status_code == 401  # blacklisted
    assert api.post(REFRESH, {"refresh": laptop["refresh"]}, format="json").status_code == 200


def test_a_logout_with_all_ends_refresh_tokens_even_ones_it_did_not_blacklist(api, user):
    phone = obtain(api).json()
    # A refresh token that is not in the outstanding list (issued by code, not the endpoint).
    unlisted = str(PreciseRefreshToken.for_user(user))
    OutstandingToken.objects.filter(jti=RefreshToken(unlisted)["jti"]).delete()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {phone['access']}")
    assert api.post(LOGOUT, {"refresh": phone["refresh"], "all": True}, format="json").status_code == 204
    api.credentials()
    response = api.post(REFRESH, {"refresh": unlisted}, format="json")
    assert response.status_code == 401 and "revoked" in response.json()["message"], response.json()


# ---------------------------------------------------------------- verify applies the socket's checks


def test_verify_refuses_what_the_socket_refuses(api, make_user, user):
    access, refresh = make_tokens(user)
    assert api.post(VERIFY, {"token": access}, format="json").json() == {}
    assert api.post(VERIFY, {"token": refresh}, format="json").status_code == 401  # not an access token
    revoke_credentials(user, "logout")
    revoked = api.post(VERIFY, {"token": access}, format="json")
    assert revoked.status_code == 401 and revoked.json()["message"] == "The token was revoked."
    bob = make_user("bob")
    bobs, _ = make_tokens(bob)
    bob.is_active = False
    bob.save()
    assert api.post(VERIFY, {"token": bobs}, format="json").status_code == 401
    carl = make_user("carl")
    carls, _ = make_tokens(carl)
    carl.delete()
    assert api.post(VERIFY, {"token": carls}, format="json").status_code == 401
    expired = PreciseAccessToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    assert api.post(VERIFY, {"token": str(expired)}, format="json").status_code == 401
    assert api.post(VERIFY, {}, format="json").status_code == 400
