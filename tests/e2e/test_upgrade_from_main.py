"""A database made by the code before `CredentialState` moved into the app is upgraded, and downgraded, whole.

Until 7392aaa (`UPGRADE_FROM`) the revocation records lived in the reference deployment's
`accounts` app; now they are `realtime.CredentialState`, and `realtime` 0008 adopts the old
table `accounts_credentialstate` (renamed; rows and the user foreign key untouched) and relabels
its content type (same id, so permissions, their grants and admin log entries follow). This
test runs the real thing on the suite's engine (a fresh SQLite file, or a PostgreSQL database
of its own, made and dropped here): that commit's tree (`git archive`, so it fails without the
git history, never skips) migrates a database and seeds it through its own code; this
checkout's `migrate` upgrades it, and its code must find every seeded row as it was, refuse a
token issued before the revocation and accept one issued after, and honour the permissions
under their new label. `migrate realtime 0007` then gives the old tree its table and content
type back; a second upgrade meets a `realtime` content type that this checkout's code made
meanwhile, and merges it into the old one.
Every step is a `manage.py` of its own tree in a subprocess, as an operator would run it.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from .servers import database_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
UPGRADE_FROM = "7392aaab49b3aa27e76d393a87a12073aef8d0ef"  # the last commit with CredentialState in `accounts`
STEP_TIMEOUT = 300  # seconds for one command: a bound against a hang, never a measurement
PASSWORD = "correct-horse-battery"

# Runs in both trees: every row the upgrade must keep, as JSON, and the content type of the records.
DUMP = """
import json
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from realtime.models import Connection, Membership, Node, Room

User = get_user_model()


def rows(credential_state):
    tables = {
        "credential_state": credential_state, "users": User, "groups": Group, "log_entries": LogEntry,
        "group_permissions": Group.permissions.through, "user_permissions": User.user_permissions.through,
        "user_groups": User.groups.through, "rooms": Room, "memberships": Membership, "nodes": Node,
        "connections": Connection, "outstanding_tokens": OutstandingToken, "blacklisted_tokens": BlacklistedToken,
    }
    return {name: list(model.objects.order_by("pk").values()) for name, model in tables.items()}


def state_type(credential_state):
    found = ContentType.objects.get_for_model(credential_state)
    permissions = Permission.objects.filter(content_type=found).order_by("codename").values_list("id", "codename")
    return {"id": found.id, "app_label": found.app_label, "permissions": list(permissions)}


def credential_tables():
    return sorted(name for name in connection.introspection.table_names() if name.endswith("credentialstate"))


def report(**values):
    print("RESULT " + json.dumps(values, cls=DjangoJSONEncoder))
"""

# The old tree's code: users, revocations, grants, a log entry, rooms, sessions, nodes, tokens.
SEED = f"""
from django.contrib.admin.models import CHANGE
from django.utils import timezone
from accounts.models import CredentialState, revoke_credentials
from accounts.tokens import PreciseRefreshToken

root = User.objects.create_superuser("root", password={PASSWORD!r})
ann = User.objects.create_user("ann", password={PASSWORD!r})
bob = User.objects.create_user("bob", password={PASSWORD!r})
# An access token is stamped when it is made from its refresh token: each pair is made at once.
before = PreciseRefreshToken.for_user(ann)
tokens = {{"access_before": str(before.access_token), "refresh_before": str(before)}}
revoke_credentials(ann, "password_changed")  # access and refresh tokens
after = PreciseRefreshToken.for_user(ann)
tokens |= {{"access_after": str(after.access_token), "refresh_after": str(after)}}
revoke_credentials(bob, "logout")  # access tokens only: refresh_revoked_at stays empty
PreciseRefreshToken.for_user(bob).blacklist()
kind = ContentType.objects.get_for_model(CredentialState)
auditors = Group.objects.create(name="auditors")
auditors.permissions.add(Permission.objects.get(content_type=kind, codename="view_credentialstate"))
bob.groups.add(auditors)
ann.user_permissions.add(Permission.objects.get(content_type=kind, codename="change_credentialstate"))
entry = LogEntry.objects.create(
    user=root, content_type=kind, object_id=str(ann.pk), object_repr=str(ann.credential_state),
    action_flag=CHANGE, change_message="revoked by hand",
)
kitchen = Room.objects.create(slug="kitchen", name="Kitchen")
Membership.objects.create(room=kitchen, user=ann)
now = timezone.now()
Node.objects.create(name="old-host:1", hostname="old-host", pid=1, last_seen=now)
Connection.objects.create(
    session_id="s-1", user=ann, node="old-host:1", channel_name="specific.a!b", opened_at=now,
    authenticated_at=now, last_seen=now, auth_method="header",
)
report(
    rows=rows(CredentialState), state_type=state_type(CredentialState), tables=credential_tables(), log_entry=entry.pk,
    tokens=tokens,
)
"""

# The old tree's code again, after the downgrade: what it reads.
READ_OLD = """
from accounts.models import CredentialState

report(
    rows=rows(CredentialState),
    state_type=state_type(CredentialState),
    tables=credential_tables(),
    credential_types=sorted(ContentType.objects.filter(model="credentialstate").values_list("app_label", flat=True)),
)
"""

# This checkout's code on the downgraded database, as a process of it would act meanwhile (a
# `post_migrate` on the project's models, the admin): a `realtime.credentialstate` content type
# of its own with its permissions, a grant the group holds under the old label already, a new
# grant, and a log entry.
MEANWHILE = """
from django.apps import apps
from django.contrib.admin.models import CHANGE
from django.contrib.auth.management import create_permissions
from realtime.models import CredentialState

create_permissions(apps.get_app_config("realtime"), verbosity=0)
kind = ContentType.objects.get_for_model(CredentialState)
twins = {permission.codename: permission for permission in Permission.objects.filter(content_type=kind)}
Group.objects.get(name="auditors").permissions.add(twins["view_credentialstate"])
bob = User.objects.get(username="bob")
bob.user_permissions.add(twins["delete_credentialstate"])
entry = LogEntry.objects.create(
    user=User.objects.get(username="root"), content_type=kind, object_id=str(bob.pk), object_repr="meanwhile",
    action_flag=CHANGE,
)
grants = User.user_permissions.through.objects.filter(user=bob, permission=twins["delete_credentialstate"])
report(
    kind=[kind.id, kind.app_label],
    user_permissions=list(grants.values()),
    log_entries=list(LogEntry.objects.filter(pk=entry.pk).values()),
)
"""

# This checkout's code after the upgrade (TOKENS and LOG_ENTRY are prepended): what it reads and decides.
READ_NEW = """
from rest_framework_simplejwt.tokens import RefreshToken
from realtime.auth.tokens import InvalidCredentials, check_refresh_token, user_for_token, validate_access_token
from realtime.models import CredentialState


def verdict(check, raw):
    try:
        check(raw)
    except InvalidCredentials as exc:
        return f"refused: {exc}"
    return "accepted"


ann, bob = User.objects.get(username="ann"), User.objects.get(username="bob")
entry = LogEntry.objects.get(pk=LOG_ENTRY)
report(
    rows=rows(CredentialState),
    state_type=state_type(CredentialState),
    tables=credential_tables(),
    credential_types=sorted(ContentType.objects.filter(model="credentialstate").values_list("id", "app_label")),
    verdicts={
        name: verdict(lambda raw: user_for_token(validate_access_token(raw)), TOKENS[name])
        for name in ("access_before", "access_after")
    } | {
        name: verdict(lambda raw: check_refresh_token(RefreshToken(raw)), TOKENS[name])
        for name in ("refresh_before", "refresh_after")
    },
    perms={
        "ann may change": ann.has_perm("realtime.change_credentialstate"),
        "bob may view (group)": bob.has_perm("realtime.view_credentialstate"),
        "bob may change": bob.has_perm("realtime.change_credentialstate"),
        "bob may delete": bob.has_perm("realtime.delete_credentialstate"),
        "ann, old label": ann.has_perm("accounts.change_credentialstate"),
    },
    log_entry=[entry.content_type.app_label, entry.get_edited_object().pk],
)
"""


def commit_tree(commit: str, into: Path) -> Path:
    """The files of `commit` extracted into `into`: fails (never skips) without the git history."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        pytest.fail(
            f"commit {commit} is not in {ROOT}'s git history (a shallow clone or an export?): "
            "the upgrade test needs it; `git fetch --unshallow` brings it",
            pytrace=False,
        )
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


@pytest.fixture
def upgrade_database(tmp_path: Path) -> Iterator[str]:
    """A `DATABASE_URL` of an empty database of this test's own, on the engine the suite runs on."""
    configured = settings.DATABASES["default"]
    if configured["ENGINE"].endswith("sqlite3"):
        yield database_url({"ENGINE": configured["ENGINE"], "NAME": tmp_path / "upgrade.sqlite3"})
        return
    name = f"realtime_upgrade_{uuid.uuid4().hex[:12]}"
    server = {
        "host": configured.get("HOST") or None,
        "port": configured.get("PORT") or None,
        "user": configured.get("USER") or None,
        "password": configured.get("PASSWORD") or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url({**configured, "NAME": name})
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def manage(upgrade_database: str) -> Any:
    """`manage(tree, "migrate")`: that tree's `manage.py` on the test's database; fails on a non-zero exit."""
    key = secrets.token_urlsafe(48)  # one key for both trees: the new code checks tokens the old one signed
    # Not the suite's database, Redis or app settings; and no coverage, which would measure the old tree's
    # `realtime` under the checkout's name.
    dropped = ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "REALTIME_", "COVERAGE_", "DJANGO_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    env |= {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": upgrade_database,
        "SECRET_KEY": key,
        "JWT_SIGNING_KEY": key,
        "JWT_ACCESS_SECONDS": "3600",  # the seeded tokens outlive the test
        "DEBUG": "1",
    }

    def run(tree: Path, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(PYTHON), "manage.py", *args], cwd=tree, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT
        )
        if result.returncode != 0:
            where = "this checkout" if tree == ROOT else f"the tree of {UPGRADE_FROM[:7]}"
            pytest.fail(f"{where}: `manage.py {args[0]}` exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    return run


def shell(manage: Any, tree: Path, code: str) -> dict[str, Any]:
    """Run `code` (after DUMP) in `tree`'s `manage.py shell` and return what it reported."""
    output = manage(tree, "shell", "-c", DUMP + code).stdout
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line, got:\n{output}"
    return json.loads(lines[0].removeprefix("RESULT "))


def same_rows(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> None:
    """Every table has the same rows, each with the same values in the columns it had before."""
    assert before.keys() == after.keys()
    for table, rows in before.items():
        assert len(after[table]) == len(rows), f"{table} changed:\n{rows}\n->\n{after[table]}"
        kept = [{column: row[column] for column in old} for old, row in zip(rows, after[table], strict=True)]
        assert kept == rows, f"{table} changed:\n{rows}\n->\n{after[table]}"


def read_new(manage: Any, seeded: dict[str, Any]) -> dict[str, Any]:
    """What this checkout's code finds in the upgraded database."""
    given = f"TOKENS = {seeded['tokens']!r}\nLOG_ENTRY = {seeded['log_entry']!r}\n"
    return shell(manage, ROOT, given + READ_NEW)


PERMS = {
    "ann may change": True,
    "bob may view (group)": True,
    "bob may change": False,
    "bob may delete": False,
    "ann, old label": False,
}


def assert_upgraded(found: dict[str, Any], seeded: dict[str, Any], rows: dict[str, list], perms: dict) -> None:
    """The records, grants and log entry of `seeded` as this checkout's code must see them, and `rows`."""
    same_rows(rows, found["rows"])
    assert seeded["rows"]["credential_state"], "the seed revoked nobody"
    assert found["state_type"] == {**seeded["state_type"], "app_label": "realtime"}  # same id, same permissions
    assert found["credential_types"] == [[seeded["state_type"]["id"], "realtime"]]  # and no second one
    assert found["tables"] == ["realtime_credentialstate"]
    verdicts = found["verdicts"]
    assert verdicts["access_before"].startswith("refused") and "revoked" in verdicts["access_before"], verdicts
    assert verdicts["refresh_before"].startswith("refused") and "revoked" in verdicts["refresh_before"], verdicts
    assert verdicts["access_after"] == verdicts["refresh_after"] == "accepted", verdicts
    assert found["perms"] == perms
    ann = next(user["id"] for user in seeded["rows"]["users"] if user["username"] == "ann")
    assert found["log_entry"] == ["realtime", ann]


def test_a_database_of_the_old_code_upgrades_and_downgrades_with_every_row(tmp_path: Path, manage: Any) -> None:
    old = commit_tree(UPGRADE_FROM, tmp_path / "old")
    manage(old, "migrate", "--no-input")
    seeded = shell(manage, old, SEED)
    assert seeded["tables"] == ["accounts_credentialstate"]
    assert seeded["state_type"]["app_label"] == "accounts" and len(seeded["state_type"]["permissions"]) == 4

    plan = manage(ROOT, "migrate", "--plan").stdout
    assert plan.index("realtime.0008_credentialstate") < plan.index("accounts.0003_credentialstate_moved"), plan
    manage(ROOT, "migrate", "--no-input")
    manage(ROOT, "makemigrations", "--check", "--dry-run")
    assert_upgraded(read_new(manage, seeded), seeded, seeded["rows"], PERMS)

    # Back: the old tree finds its table, content type and rows as it left them.
    manage(ROOT, "migrate", "--no-input", "realtime", "0007")
    manage(old, "migrate", "--check")  # nothing of the old tree's left unapplied
    manage(old, "check")
    downgraded = shell(manage, old, READ_OLD)
    same_rows(seeded["rows"], downgraded["rows"])
    assert downgraded["state_type"] == seeded["state_type"]
    assert downgraded["tables"] == ["accounts_credentialstate"]
    assert downgraded["credential_types"] == ["accounts"]

    # Meanwhile this checkout's code makes a `realtime.credentialstate` of its own and uses it; up
    # again, it is merged into the old one: grants and log entries move to the old id, a grant held
    # twice is kept once, and the content type and its permissions are deleted.
    meanwhile = shell(manage, ROOT, MEANWHILE)
    assert meanwhile["kind"][0] != seeded["state_type"]["id"] and meanwhile["kind"][1] == "realtime"
    manage(ROOT, "migrate", "--no-input")
    old_delete = {name: pk for pk, name in seeded["state_type"]["permissions"]}["delete_credentialstate"]
    moved_grants = [{**row, "permission_id": old_delete} for row in meanwhile["user_permissions"]]
    moved_entries = [{**row, "content_type_id": seeded["state_type"]["id"]} for row in meanwhile["log_entries"]]
    rows = seeded["rows"] | {
        "user_permissions": seeded["rows"]["user_permissions"] + moved_grants,
        "log_entries": seeded["rows"]["log_entries"] + moved_entries,
    }
    assert_upgraded(read_new(manage, seeded), seeded, rows, PERMS | {"bob may delete": True})
