"""realtime.auth.watch and realtime.auth.revocation: which changes of a user revoke its credentials
and send `credentials_revoked`, and when."""

import logging

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction

from realtime.auth.revocation import revoke_credentials
from realtime.models import CredentialState
from realtime.signals import credentials_revoked
from tests.conftest import PASSWORD, make_tokens

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

User = get_user_model()
LOGOUT = "/api/auth/logout/"


@pytest.fixture
def revocations():
    """Every `credentials_revoked` sent during the test, as (sender, user pk, reason)."""
    seen: list[tuple] = []

    def receiver(sender, user, reason, **kwargs):
        seen.append((sender, user.pk, reason))

    credentials_revoked.connect(receiver, dispatch_uid="test-revocations")
    yield seen
    credentials_revoked.disconnect(dispatch_uid="test-revocations")


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """`with commit(): ...`: run the block's on-commit callbacks at its end, as a commit would
    (the test itself runs inside a transaction that never commits)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def revoked_at(user):
    return CredentialState.objects.filter(user=user).values_list("revoked_at", flat=True).first()


def test_deactivation_revokes(user, revocations, commit):
    with commit():
        user.is_active = False
        user.save()
    assert revocations == [(User, user.pk, "deactivated")]
    assert revoked_at(user) is not None


def test_deactivation_with_a_falsy_value_revokes(user, revocations, commit):
    with commit():
        user.is_active = 0
        user.save()
    assert revocations == [(User, user.pk, "deactivated")]


def test_deactivation_with_update_fields_revokes(user, revocations, commit):
    with commit():
        user.is_active = False
        user.save(update_fields=["is_active"])
    assert revocations == [(User, user.pk, "deactivated")]


def test_an_unsaved_deactivation_waits_for_the_save_that_stores_it(user, revocations, commit):
    with commit():
        user.is_active = False
        user.save(update_fields=["last_login"])
    assert revocations == []
    with commit():
        user.save()
    assert revocations == [(User, user.pk, "deactivated")]


def test_deactivating_an_instance_loaded_without_is_active(user, revocations, commit):
    with commit():
        partial = User.objects.only("username").get(pk=user.pk)
        partial.is_active = False
        partial.save()
    assert revocations == [(User, user.pk, "deactivated")]


def test_reactivation_and_saving_an_inactive_user_do_nothing(make_user, revocations, commit):
    with commit():
        bob = make_user("bob", is_active=False)
        bob.first_name = "Bob"
        bob.save()
        bob.is_active = True
        bob.save()
    assert revocations == []
    assert revoked_at(bob) is None


def test_a_new_password_revokes(user, revocations, commit):
    with commit():
        user.set_password(PASSWORD + "!")
        user.save()
    assert revocations == [(User, user.pk, "password_changed")]
    assert revoked_at(user) is not None


def test_a_new_password_on_an_instance_loaded_without_it(user, revocations, commit):
    with commit():
        partial = User.objects.only("username").get(pk=user.pk)
        partial.set_password(PASSWORD + "!")
        partial.save()
    assert revocations == [(User, user.pk, "password_changed")]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda u: u.set_unusable_password(), id="unusable"),
        pytest.param(lambda u: setattr(u, "password", make_password("other-password")), id="hash-assigned"),
    ],
)
def test_other_password_changes_revoke(user, revocations, commit, change):
    with commit():
        change(user)
        user.save()
    assert revocations == [(User, user.pk, "password_changed")]


def test_a_hash_upgrade_at_login_is_not_a_password_change(user, revocations, commit):
    # An outdated hash, stored without signals (as an older Django would have left it).
    User.objects.filter(pk=user.pk).update(password=make_password(PASSWORD, hasher="pbkdf2_sha1"))
    user = User.objects.get(pk=user.pk)
    with commit():
        assert user.check_password(PASSWORD)  # rehashes with the preferred hasher and saves
    assert user.password.startswith("pbkdf2_sha256$")
    assert User.objects.get(pk=user.pk).password == user.password
    assert revocations == []
    assert revoked_at(user) is None


def test_a_current_hash_assigned_again_without_set_password_is_a_change(user, revocations, commit):
    # `_password` is None (no set_password), but the old hash was not outdated: not an upgrade.
    with commit():
        user.password = make_password(PASSWORD)
        user.save(update_fields=["password"])
    assert revocations == [(User, user.pk, "password_changed")]


def test_replacing_an_unrecognised_hash_is_a_change(user, revocations, commit):
    User.objects.filter(pk=user.pk).update(password="legacy$from-another-system")
    user = User.objects.get(pk=user.pk)
    with commit():
        user.password = make_password(PASSWORD)
        user.save()
    assert revocations == [(User, user.pk, "password_changed")]


def test_deactivation_and_a_new_password_together_revoke_once(user, revocations, commit):
    with commit():
        user.is_active = False
        user.set_password(PASSWORD + "!")
        user.save()
    assert revocations == [(User, user.pk, "deactivated")]


def test_deletion_is_announced_with_the_users_id(user, revocations, commit):
    pk = user.pk
    with commit():
        revoke_credentials(user, "logout")
        user.delete()
    assert user.pk is None
    assert revocations == [(User, pk, "logout"), (User, pk, "deleted")]
    assert not CredentialState.objects.filter(user_id=pk).exists()


def test_queryset_deletion_is_announced(make_user, revocations, commit):
    ann, bob = make_user("ann"), make_user("bob")
    with commit():
        User.objects.filter(pk__in=[ann.pk, bob.pk]).delete()
    assert sorted(revocations, key=str) == sorted([(User, ann.pk, "deleted"), (User, bob.pk, "deleted")], key=str)


def test_creating_a_user_does_nothing(make_user, revocations, commit):
    with commit():
        bob = make_user("bob")
        User.objects.create(username="carol", is_active=False)
    assert revocations == []
    assert revoked_at(bob) is None


def test_an_unrelated_save_does_nothing(user, revocations, commit):
    with commit():
        user.first_name = "Ann"
        user.last_login = user.date_joined
        user.save()
        User.objects.get(pk=user.pk).save()
    assert revocations == []
    assert not CredentialState.objects.exists()


def test_loading_a_partial_user_reads_no_deferred_field(user, django_assert_num_queries):
    with django_assert_num_queries(1):
        partial = User.objects.only("username").get(pk=user.pk)
    with django_assert_num_queries(1):
        partial.save()  # an UPDATE of the loaded fields only; no query to learn the old values


def test_logout_revokes_and_signals(api, user, revocations, commit):
    access, refresh = make_tokens(user)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    with commit():
        assert api.post(LOGOUT, {"refresh": refresh}, format="json").status_code == 204
    assert revocations == [(User, user.pk, "logout")]
    assert revoked_at(user) is not None


def test_revoking_again_keeps_one_row(user, revocations, commit):
    with commit():
        revoke_credentials(user, "logout")
        first = revoked_at(user)
        revoke_credentials(user, "password_changed")
    assert revoked_at(user) >= first
    assert CredentialState.objects.filter(user=user).count() == 1
    assert [reason for _, _, reason in revocations] == ["logout", "password_changed"]


@pytest.mark.django_db(transaction=True)
def test_the_signal_waits_for_the_commit(user, revocations):
    with transaction.atomic():
        user.is_active = False
        user.save()
        assert revocations == []
    assert revocations == [(User, user.pk, "deactivated")]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_revokes_nothing(user, revocations):
    with pytest.raises(RuntimeError), transaction.atomic():
        user.is_active = False
        user.save()
        raise RuntimeError("roll back")
    assert revocations == []
    assert revoked_at(user) is None


@pytest.mark.django_db(transaction=True)
def test_a_failing_receiver_does_not_undo_the_logout(api, user, revocations, caplog):
    def broken(sender, **kwargs):
        raise ConnectionError("the channel layer is down")

    credentials_revoked.connect(broken, dispatch_uid="test-broken")
    try:
        access, refresh = make_tokens(user)
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        with caplog.at_level(logging.ERROR, logger="django.dispatch"):
            response = api.post(LOGOUT, {"refresh": refresh}, format="json")
    finally:
        credentials_revoked.disconnect(dispatch_uid="test-broken")
    assert response.status_code == 204
    assert revoked_at(user) is not None
    assert revocations == [(User, user.pk, "logout")]
    assert "the channel layer is down" in caplog.text
