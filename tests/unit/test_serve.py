"""The production command's options come from one place and follow the settings; the docs show it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from project import serve
from realtime.server import serve as app_serve
from tests.conftest import override_realtime

pytestmark = pytest.mark.unit

ROOT = Path(serve.__file__).resolve().parents[1]


@override_realtime({"MAX_FRAME_BYTES": 1000})
def test_the_frame_bound_follows_max_frame_bytes():
    options = serve.uvicorn_options()
    assert options[options.index("--ws-max-size") + 1] == "2000"
    assert serve.daphne_options() == ["--websocket-max-message-size", "2000", "--websocket-max-frame-size", "2000"]


def test_the_docs_run_the_production_command():
    documented = " ".join(serve.command("--host", "0.0.0.0", "--port", "8000", python="python"))
    for doc in ("README.md", "docs/operations.md"):
        assert documented in (ROOT / doc).read_text(), doc


@override_settings(ASGI_APPLICATION="mysite.asgi.application")
def test_the_apps_command_serves_the_projects_asgi_application():
    assert app_serve.application_path() == "mysite.asgi:application"
    assert app_serve.uvicorn_options()[0] == "mysite.asgi:application"
    assert app_serve.uvicorn_options("other.asgi:app")[0] == "other.asgi:app"


def test_the_apps_command_needs_the_settings_or_the_application(monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    with pytest.raises(SystemExit, match="DJANGO_SETTINGS_MODULE"):
        app_serve.application_path()


def test_the_reference_deployment_serves_with_the_apps_options():
    assert serve.uvicorn_options() == app_serve.uvicorn_options("project.asgi:application")


def test_python_m_realtime_server_runs_uvicorn_with_the_apps_options(tmp_path):
    # Without DJANGO_SETTINGS_MODULE: the command takes `project.settings` from the application's name
    # (reading MAX_FRAME_BYTES for its options would fail otherwise), then hands uvicorn the line.
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-m", "realtime.server", "project.asgi:application", "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "--ws-max-size" in done.stdout
