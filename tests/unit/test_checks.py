"""The app's system checks (realtime/checks.py): each problem reported with its id and a hint; a good project: none."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from realtime.asgi import realtime_application
from realtime.support.conf import load, problems
from tests import rules as bad_rules
from tests.conftest import override_realtime

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_realtime_environment(monkeypatch):
    """Only the settings a test gives count: no REALTIME_* variable of the shell running the suite."""
    for name in os.environ:
        if name.startswith("REALTIME_"):
            monkeypatch.delenv(name)


def reported(check_id: str) -> list[checks.CheckMessage]:
    """The messages with `check_id` of a run of the "realtime" checks (the run the servers make)."""
    return [message for message in checks.run_checks(tags=["realtime"]) if message.id == check_id]


def test_the_projects_own_settings_pass_every_check():
    out = StringIO()
    # pytest-django runs tests with DEBUG off; the project's development default is on (no Redis needed).
    with override_settings(DEBUG=True):
        call_command("check", stdout=out)
    # and a production configuration: DEBUG off with a Redis
    with override_settings(DEBUG=False, REALTIME={**settings.REALTIME, "REDIS_URL": "redis://127.0.0.1:6379/0"}):
        call_command("check", stdout=out)
    assert out.getvalue().count("System check identified no issues (0 silenced).") == 2, out.getvalue()


def test_djangos_default_run_includes_the_checks():
    with override_realtime({"HEARTBEAT": 0}):
        with pytest.raises(SystemCheckError, match=r"realtime\.E002"):
            call_command("check")


@pytest.mark.parametrize("app", ["channels", "rest_framework", "rest_framework_simplejwt.token_blacklist"])
def test_e001_an_app_missing_from_installed_apps(app):
    with override_settings(INSTALLED_APPS=[name for name in settings.INSTALLED_APPS if name != app]):
        (error,) = reported("realtime.E001")
    assert error.level == checks.ERROR
    assert repr(app) in error.msg
    assert f'"{app}",' in error.hint and "INSTALLED_APPS" in error.hint
    assert reported("realtime.E001") == []


def test_e002_every_bad_key_value_and_environment_variable(monkeypatch):
    monkeypatch.setenv("REALTIME_MAX_ERRORS", "2.5")
    monkeypatch.setenv("REALTIME_HEARTBEET", "1")
    with override_realtime({"HEARTBEET": 1, "RATE": "fast", "MAX_SUBSCRIPTIONS": 0}):
        errors = reported("realtime.E002")
    assert all(error.level == checks.ERROR and "docs/configuration.md" in error.hint for error in errors)
    messages = sorted(error.msg for error in errors)
    assert len(messages) == 5, messages
    for named in ("'HEARTBEET'", "'RATE'", "'MAX_SUBSCRIPTIONS'", "REALTIME_MAX_ERRORS", "REALTIME_HEARTBEET"):
        assert any(named in message for message in messages), (named, messages)


@pytest.mark.parametrize(
    ("user_settings", "environ"),
    [
        ({}, {}),
        ({"HEARTBEAT": 2, "NAMESPACES": {"chat": {"history_size": 5}}}, {"REALTIME_RATE": "7"}),
        ({"HEARTBEAT": 0}, {}),
        ({"HEARTBEAT": 0}, {"REALTIME_HEARTBEAT": "2"}),  # the environment wins: the bad value is never used
        ({"HEARTBEAT": 2}, {"REALTIME_HEARTBEAT": "0"}),
        (["HEARTBEAT"], {}),
        ({"HEARTBEET": 1, "RATE": True}, {"REALTIME_NOPE": "1"}),
    ],
)
def test_problems_are_what_load_refuses_each_one(user_settings, environ):
    found = problems(user_settings, environ)
    try:
        load(user_settings, environ)
    except ImproperlyConfigured as exc:
        assert str(exc) in found  # the message `load` stops at is among them
    else:
        assert found == []


def test_problems_reports_every_mistake_at_once():
    found = problems({"HEARTBEET": 1, "RATE": True}, {"REALTIME_NOPE": "1", "REALTIME_MAX_ERRORS": "x"})
    assert len(found) == 4, found


def sync_rule(user, name):
    return True


async def async_rule(user, name):
    return True


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("no_such_module.rule", "cannot import"),
        ("realtime.namespaces.no_such_rule", "cannot import"),
        ("realtime.namespaces.CHANNEL_RE", "is not callable"),
        (f"{bad_rules.__name__}.RuleClass", "is not a function"),
        (f"{bad_rules.__name__}.generator_rule", "is not a function"),
        (f"{bad_rules.__name__}.async_generator_rule", "is not a function"),
        (f"{bad_rules.__name__}.callable_rule", "is not a function"),
        (f"{bad_rules.__name__}.one_argument", "does not take (user, name)"),
        (f"{bad_rules.__name__}.keyword_name", "does not take (user, name)"),
    ],
)
def test_e003_a_rule_path_that_does_not_import_or_is_not_a_rule(path, says):
    # A bad HEARTBEAT besides (E002) hides no rule.
    with override_realtime({"HEARTBEAT": 0, "NAMESPACES": {"chat": {"publish": path}}}):
        (error,) = reported("realtime.E003")
    assert error.level == checks.ERROR
    assert "NAMESPACES['chat']['publish']" in error.msg and repr(path) in error.msg and says in error.msg
    assert "def rule(user, name) -> bool" in error.hint and "realtime.namespaces.authenticated" in error.hint


def test_e003_plain_and_async_rules_pass():
    rules = {"subscribe": f"{__name__}.sync_rule", "publish": f"{__name__}.async_rule"}
    with override_realtime({"NAMESPACES": {"chat": rules}}):
        assert reported("realtime.E003") == []


def test_e003_from_the_environment(monkeypatch):
    monkeypatch.setenv("REALTIME_NAMESPACES", '{"chat": {"subscribe": "no_such_module.rule"}}')
    (error,) = reported("realtime.E003")
    assert "no_such_module.rule" in error.msg


@pytest.mark.parametrize(("field", "says"), [("first_name", "is not a unique field of"), ("nope", "is not a field of")])
def test_e004_a_user_id_field_that_names_no_one_user(field, says):
    with override_settings(SIMPLE_JWT={**settings.SIMPLE_JWT, "USER_ID_FIELD": field}):
        (error,) = reported("realtime.E004")
    assert error.level == checks.ERROR
    assert repr(field) in error.msg and says in error.msg and "auth.User" in error.msg
    assert "\"USER_ID_FIELD\": 'id'" in error.hint


def test_e004_any_unique_field_will_do():
    with override_settings(SIMPLE_JWT={**settings.SIMPLE_JWT, "USER_ID_FIELD": "username"}):
        assert reported("realtime.E004") == []


def test_e005_no_asgi_application():
    with override_settings(ASGI_APPLICATION=None):
        (error,) = reported("realtime.E005")
    assert error.level == checks.ERROR
    assert 'ASGI_APPLICATION = "project.asgi.application"' in error.hint  # this project's package
    assert "realtime_application(get_asgi_application())" in error.hint


def test_w001_no_redis_with_debug_off():
    with override_settings(DEBUG=False, REALTIME={}):
        (warning,) = reported("realtime.W001")
    assert warning.level == checks.WARNING
    assert "one server process" in warning.msg.lower() and "reaches no socket" in warning.msg
    assert '"REDIS_URL": "redis://' in warning.hint and "REALTIME_REDIS_URL" in warning.hint
    assert 'SILENCED_SYSTEM_CHECKS = ["realtime.W001"]' in warning.hint


def test_w001_not_with_debug_on_or_with_redis(monkeypatch):
    with override_settings(DEBUG=True, REALTIME={}):
        assert reported("realtime.W001") == []
    monkeypatch.setenv("REALTIME_REDIS_URL", "redis://127.0.0.1:6379/0")
    with override_settings(DEBUG=False, REALTIME={}):
        assert reported("realtime.W001") == []


def test_w002_no_sessions_app():
    with override_settings(INSTALLED_APPS=[app for app in settings.INSTALLED_APPS if app != "django.contrib.sessions"]):
        (warning,) = reported("realtime.W002")
    assert warning.level == checks.WARNING
    assert "cookie authentication at the handshake is off" in warning.msg
    assert '"django.contrib.sessions",' in warning.hint


def test_start_up_does_not_raise_for_what_the_checks_report_but_reading_does():
    from realtime.namespaces import namespaces
    from realtime.support.conf import realtime_settings

    bad = {"HEARTBEAT": 0, "NAMESPACES": {"public": {"publish": "realtime.namespaces.no_such_rule"}}}
    with override_realtime(bad):
        apps.get_app_config("realtime").ready()  # what start-up runs: `check` can run to report it
        with pytest.raises(ImproperlyConfigured, match="'HEARTBEAT'"):
            realtime_settings.HEARTBEAT  # noqa: B018
    with override_realtime({"NAMESPACES": bad["NAMESPACES"]}):
        with pytest.raises(ImproperlyConfigured, match=r"NAMESPACES\['public'\]\['publish'\].*cannot import"):
            namespaces()


def test_realtime_application_refuses_an_error_but_not_a_silenced_one():
    with override_realtime({"HEARTBEAT": 0}):
        with pytest.raises(ImproperlyConfigured) as info:
            realtime_application(None)
    assert "realtime.E002" in str(info.value) and "'HEARTBEAT'" in str(info.value) and "HINT:" in str(info.value)
    with override_settings(ASGI_APPLICATION=None, SILENCED_SYSTEM_CHECKS=["realtime.E005"]):
        assert realtime_application(None) is not None


def test_a_project_without_channels_fails_check_and_cannot_serve(tmp_path):
    (tmp_path / "without_channels.py").write_text(
        "from project.settings import *  # noqa: F403\n\n"
        'INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("channels", "daphne")]  # noqa: F405\n'
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("REALTIME_")}
    env.update(DJANGO_SETTINGS_MODULE="without_channels", PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    check = run("manage.py", "check")
    assert check.returncode != 0
    assert "(realtime.E001) 'channels' is not in INSTALLED_APPS" in check.stderr, check.stderr
    assert 'HINT: Add the line  "channels",  to INSTALLED_APPS' in check.stderr

    serve = run("-c", "import project.asgi")
    assert serve.returncode != 0
    assert "ImproperlyConfigured: The realtime app is misconfigured" in serve.stderr, serve.stderr
    assert "realtime.E001: 'channels' is not in INSTALLED_APPS" in serve.stderr
