"""realtime.auth.tokens and the revocation rule, without a database (the user-loading steps:
tests/integration/test_ws_middleware.py)."""

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import jwt
import pytest
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from realtime.auth.revocation import announce_revocation, revoke_credentials
from realtime.auth.tokens import (
    Authenticated,
    CredentialsError,
    ExpiredCredentials,
    InvalidCredentials,
    PreciseAccessToken,
    PreciseRefreshToken,
    issued_at,
    issued_at_us,
    user_id_of,
    validate_access_token,
)
from realtime.models import CredentialState, unix_microseconds

pytestmark = pytest.mark.unit

FOREIGN_KEY = "the-signing-key-of-some-other-server-0123456789"
REVOKED_AT = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
SECOND = 1767268800  # REVOKED_AT's whole second
REVOKED_US = SECOND * 1_000_000 + 500000


def access_token(user_id: str | None = "7", **claims) -> AccessToken:
    """A signed access token naming `user_id`, with extra or replaced claims."""
    token = AccessToken()
    if user_id is not None:
        token["user_id"] = user_id
    for name, value in claims.items():
        token[name] = value
    return token


def test_a_valid_token_comes_back_validated():
    raw = str(access_token("7"))
    token = validate_access_token(raw)
    assert isinstance(token, AccessToken)
    assert token["user_id"] == "7"
    assert token.token == raw


def test_an_expired_token_is_expired_not_invalid():
    token = access_token()
    token.set_exp(lifetime=-timedelta(seconds=1))
    with pytest.raises(ExpiredCredentials) as caught:
        validate_access_token(str(token))
    assert isinstance(caught.value, CredentialsError)
    assert not isinstance(caught.value, InvalidCredentials)
    assert isinstance(caught.value.__cause__, ExpiredTokenError)


def tampered() -> str:
    """Ann's signature on a payload naming someone else."""
    header, _, signature = str(access_token("7")).split(".")
    _, payload, _ = str(access_token("8")).split(".")
    return f"{header}.{payload}.{signature}"


def without(claim: str) -> str:
    token = access_token()
    del token[claim]
    return str(token)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param(tampered, id="bad-signature"),
        pytest.param(lambda: str(RefreshToken()), id="refresh-token"),
        pytest.param(lambda: jwt.encode({"token_type": "access", "exp": 4102444800}, FOREIGN_KEY), id="foreign-key"),
        pytest.param(lambda: without("exp"), id="no-exp"),
        pytest.param(lambda: without("jti"), id="no-jti"),
        pytest.param(lambda: without("token_type"), id="no-type"),
    ],
)
def test_bad_tokens_are_invalid(raw):
    raw = raw() if callable(raw) else raw
    with pytest.raises(InvalidCredentials) as caught:
        validate_access_token(raw)
    assert isinstance(caught.value.__cause__, TokenError)
    assert str(caught.value).startswith("Invalid token:")


def test_an_expired_token_with_a_bad_signature_is_invalid():
    token = access_token()
    token.set_exp(lifetime=-timedelta(seconds=1))
    forged = jwt.encode(token.payload, FOREIGN_KEY, algorithm="HS256")
    with pytest.raises(InvalidCredentials):
        validate_access_token(forged)


def test_a_token_without_a_user_claim_names_no_user():
    token = validate_access_token(str(access_token(user_id=None)))
    with pytest.raises(InvalidCredentials, match="names no user"):
        user_id_of(token)


def test_authenticated_from_a_token_carries_exp_and_iat():
    token = validate_access_token(str(access_token()))
    result = Authenticated.from_token("a user", token)
    assert result == Authenticated(user="a user", expires_at=token["exp"], issued_at=token["iat"])
    assert isinstance(result.expires_at, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.user = "someone else"


def test_a_cookie_login_has_no_expiry():
    assert Authenticated(user="a user", expires_at=None).issued_at is None


@pytest.mark.parametrize(("claims", "expected"), [({}, None), ({"iat": 1700000000}, 1700000000), ({"iat": "12"}, 12)])
def test_issued_at(claims, expected):
    token = AccessToken()
    del token["iat"]
    token.payload.update(claims)
    assert issued_at(token) == expected


def test_a_precise_access_token_is_stamped_to_the_microsecond():
    token = PreciseAccessToken()
    assert token["iat_us"] == unix_microseconds(token.current_time)
    assert token["iat_us"] // 1_000_000 == token["iat"]
    token.set_iat(at_time=REVOKED_AT)  # backdating moves both
    assert (token["iat"], token["iat_us"]) == (SECOND, REVOKED_US)
    token.set_iat("other_claim", at_time=REVOKED_AT + timedelta(hours=1))
    assert token["iat_us"] == REVOKED_US
    assert issued_at_us(validate_access_token(str(token))) == REVOKED_US


def test_a_precise_refresh_token_stamps_each_access_token_itself():
    refresh = PreciseRefreshToken()
    refresh["iat_us"] = 1  # the refresh token's own stamp must not leak into its access tokens
    access = refresh.access_token
    assert isinstance(access, PreciseAccessToken)
    assert access["iat_us"] == unix_microseconds(access.current_time)


@pytest.mark.parametrize(("value", "expected"), [(None, None), (123, 123), (True, None), ("123", None), (1.5, None)])
def test_issued_at_us_takes_only_an_integer(value, expected):
    token = AccessToken()
    if value is not None:
        token["iat_us"] = value
    assert issued_at_us(token) == expected


# The revocation rule. iat has whole seconds: a revocation at 12:00:00.5 cannot tell a
# token issued at 12:00:00.2 from one issued at 12:00:00.8 (both iat=SECOND) without iat_us.


def test_unix_microseconds_is_exact_and_zone_independent():
    assert unix_microseconds(REVOKED_AT) == REVOKED_US
    assert unix_microseconds(REVOKED_AT.astimezone(timezone(timedelta(hours=-7)))) == REVOKED_US
    assert unix_microseconds(REVOKED_AT.replace(microsecond=999999)) == REVOKED_US + 499999


@pytest.mark.parametrize(
    ("iat", "iat_us", "revoked"),
    [
        pytest.param(SECOND - 3600, None, True, id="an-hour-before"),
        pytest.param(SECOND - 1, None, True, id="the-second-before"),
        pytest.param(SECOND - 1, SECOND * 1_000_000 - 1, True, id="the-second-before-stamped"),
        pytest.param(SECOND, None, True, id="same-second-unstamped"),
        pytest.param(SECOND, REVOKED_US - 1, True, id="same-second-just-before"),
        pytest.param(SECOND, REVOKED_US, True, id="same-microsecond"),
        pytest.param(SECOND, REVOKED_US + 1, False, id="same-second-just-after"),
        pytest.param(SECOND + 1, None, False, id="the-second-after"),
        pytest.param(None, None, True, id="no-iat"),
        pytest.param(None, REVOKED_US + 1, True, id="no-iat-but-stamped"),
    ],
)
def test_a_revocation_rejects_every_token_issued_before_it(iat, iat_us, revoked):
    assert CredentialState(revoked_at=REVOKED_AT).revokes(iat, iat_us) is revoked


@pytest.mark.parametrize("iat", [None, 0, SECOND])
def test_no_revocation_rejects_nothing(iat):
    assert CredentialState(revoked_at=None).revokes(iat, None) is False


def test_credential_state_describes_itself():
    assert str(CredentialState(user_id=7, revoked_at=REVOKED_AT)) == f"credentials of user 7 revoked at {REVOKED_AT}"


@pytest.mark.parametrize("helper", [revoke_credentials, announce_revocation])
def test_an_unknown_reason_is_refused_before_anything_happens(helper):
    with pytest.raises(ValueError, match="Unknown revocation reason 'bored'"):
        helper(object(), "bored")
