"""The token blacklist's admin shows no live token: a fingerprint, never the text."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from realtime.auth.token_admin import fingerprint
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


# ---------------------------------------------------------------- no answer depends on the token text

TOKENS = "/admin/token_blacklist/outstandingtoken/"
BLACKLIST = "/admin/token_blacklist/blacklistedtoken/"


def probes(lookup: str, token: str) -> tuple[str, str]:
    """Two values for `lookup` on the token text: one the token matches, one it does not."""
    kind = lookup.rpartition("__")[2] if "__" in lookup.removeprefix("token__token") else "exact"
    head = token[:20]
    matching = {
        "regex": ("^" + head, "^" + head + "[^\\s\\S]"),
        "iregex": ("^" + head, "^" + head + "[^\\s\\S]"),
        "startswith": (head, head + "!"),
        "contains": (token[5:25], token[5:25] + "!"),
        "exact": (token, token + "x"),
        "gt": ("", "~"),
        "in": (token, token + "x"),
    }
    return matching[kind]


@pytest.fixture
def blacklist_viewer(viewer, django_user_model):
    staff = django_user_model.objects.get(username="viewer")
    staff.user_permissions.add(Permission.objects.get(codename="view_blacklistedtoken"))
    return viewer


@pytest.mark.parametrize(
    "lookup",
    ["token__regex", "token__iregex", "token__startswith", "token__contains", "token", "token__gt", "token__in"],
)
def test_the_token_list_refuses_every_lookup_on_the_token_text(viewer, make_user, lookup):
    """The finding: `?jti=<jti>&token__regex=^<prefix>[A-M]` said 1 or 0, and rebuilt a live token."""
    _, refresh = make_tokens(make_user("ann"))
    jti = OutstandingToken.objects.get(token=refresh).jti
    answers = [viewer.get(TOKENS, {"jti": jti, lookup: value}) for value in probes(lookup, refresh)]
    assert [answer.status_code for answer in answers] == [400, 400]  # DisallowedModelAdminLookup
    assert answers[0].content == answers[1].content  # nothing in the answer depends on the token
    assert viewer.get(TOKENS, {"jti": jti}).status_code == 200  # other filters still work


@pytest.mark.parametrize("lookup", ["token__token__regex", "token__token__startswith", "token__token"])
def test_the_blacklist_refuses_every_lookup_on_the_token_text(blacklist_viewer, make_user, lookup):
    _, refresh = make_tokens(make_user("ann"))
    BlacklistedToken.objects.create(token=OutstandingToken.objects.get(token=refresh))
    answers = [blacklist_viewer.get(BLACKLIST, {lookup: value}) for value in probes(lookup, refresh)]
    assert [answer.status_code for answer in answers] == [400, 400]
    assert answers[0].content == answers[1].content


def token_paths(model, depth: int = 3, prefix: str = "", seen: tuple = ()) -> list[str]:
    """Every lookup path from `model` to the token text, through at most `depth` relations."""
    paths = []
    for field in model._meta.get_fields():
        name = getattr(field, "name", None)
        if model is OutstandingToken and name == "token":
            paths.append(prefix + name)
        elif field.is_relation and field.related_model is not None and depth and field.related_model not in seen:
            # (a reverse relation's `name` is its query name, as in a lookup)
            paths += token_paths(field.related_model, depth - 1, f"{prefix}{name}__", (*seen, model))
    return paths


def test_no_admin_of_the_site_filters_or_searches_on_the_token_text(rf, admin_user):
    """Every registered admin, also those that reach the token through a relation (users, rooms,
    connections): no lookup on it is allowed, and no search field ends on it."""
    from django.contrib import admin

    request = rf.get("/admin/")
    request.user = admin_user
    checked = 0
    for model, model_admin in admin.site._registry.items():
        for path in token_paths(model):
            for lookup in (path, f"{path}__regex", f"{path}__startswith"):
                assert not model_admin.lookup_allowed(lookup, "^e", request), (model_admin, lookup)
                checked += 1
        for field in model_admin.get_search_fields(request):
            assert not any(field.lstrip("^=@").startswith(path) for path in token_paths(model)), (model_admin, field)
    assert checked >= 3 * 4  # tokens, blacklist, users, rooms at least
