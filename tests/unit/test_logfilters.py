"""The servers' logs carry no `?token=`: the redaction itself, on a record and in daphne's access log."""

import io
import logging

import pytest
from daphne.access import AccessLogGenerator

from realtime.server import logfilters

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("/ws/?token=eyJ.a-b_c&resume=s_1", "/ws/?token=[redacted]&resume=s_1"),
        ("/ws/?resume=s_1&token=eyJ.x", "/ws/?resume=s_1&token=[redacted]"),
        ('"GET /api/?access_token=abc HTTP/1.1" 200', '"GET /api/?access_token=[redacted] HTTP/1.1" 200'),
        ("/ws/?Token=abc#frag", "/ws/?Token=[redacted]#frag"),
        ("/ws/?positions=%7B%7D&auth=frame", "/ws/?positions=%7B%7D&auth=frame"),
        ("a token in prose, not a URL", "a token in prose, not a URL"),
    ],
)
def test_redact(text, redacted):
    assert logfilters.redact(text) == redacted


def test_a_record_keeps_its_shape_and_loses_its_token():
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/ws/?token=secret", "1.1", 200), None)  # fmt: skip
    assert logfilters.RedactingFilter().filter(record)
    assert record.args == ("127.0.0.1:5", "GET", "/ws/?token=[redacted]", "1.1", 200)
    silent = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "connection open", None, None)
    assert not logfilters.RedactingFilter().filter(silent)


def test_daphnes_access_log_is_redacted():
    logfilters.install()
    logfilters.install()  # idempotent: one redaction, not two wrappers
    stream = io.StringIO()
    request = {"client": "127.0.0.1:5", "method": "GET", "path": "/healthz?token=secret", "status": 200, "size": 2}
    AccessLogGenerator(stream)("http", "complete", request)
    assert "/healthz?token=[redacted]" in stream.getvalue() and "secret" not in stream.getvalue()
    assert sum(isinstance(f, logfilters.RedactingFilter) for f in logging.getLogger("uvicorn.access").filters) == 1
