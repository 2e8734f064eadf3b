"""The token blacklist's admin shows no live token: a fingerprint, never the text."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.admin import fingerprint
from tests.conftest import make_tokens

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def viewer(client, make_user):
    """A staff user who may only view outstanding tokens (the permission the finding was about)."""
    staff = make_user("viewer", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_outstandingtoken"))
    client.force_login(staff)
    return client


def test_the_list_and_the_page_of_a_token_show_its_fingerprint_never_the_token(viewer, make_user):
    _, refresh = make_tokens(make_user("ann"))
    row = OutstandingToken.objects.get(token=refresh)
    listing = viewer.get("/admin/token_blacklist/outstandingtoken/")
    detail = viewer.get(f"/admin/token_blacklist/outstandingtoken/{row.pk}/change/")
    for page in (listing, detail):
        assert page.status_code == 200
        text = page.content.decode()
        assert fingerprint(refresh) in text
        assert refresh not in text and refresh.split(".")[2] not in text  # nor its signature
    assert fingerprint(refresh) != fingerprint(refresh + "x") and len(fingerprint(refresh)) == 7 + 16
