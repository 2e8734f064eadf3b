"""The production command's options come from one place and follow the settings; the docs show it."""

from pathlib import Path

import pytest
from django.test import override_settings

from project import serve

pytestmark = pytest.mark.unit

ROOT = Path(serve.__file__).resolve().parents[1]


@override_settings(REALTIME={"MAX_FRAME_BYTES": 1000})
def test_the_frame_bound_follows_max_frame_bytes():
    options = serve.uvicorn_options()
    assert options[options.index("--ws-max-size") + 1] == "2000"
    assert serve.daphne_options() == ["--websocket-max-message-size", "2000", "--websocket-max-frame-size", "2000"]


def test_the_docs_run_the_production_command():
    documented = " ".join(serve.command("--host", "0.0.0.0", "--port", "8000", python="python"))
    for doc in ("README.md", "docs/operations.md"):
        assert documented in (ROOT / doc).read_text(), doc
