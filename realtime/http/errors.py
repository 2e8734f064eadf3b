"""One exception-to-response path for the HTTP API (like DRF's `exception_handler`).

Every error body is `{"code": ..., "message": ...}` (plus `errors` for field
errors), with the same `code` strings as the socket protocol's `error` frames
(`realtime.core.protocol.ErrorCode`; a test keeps the two in step).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from realtime.support.services import SERVICE_ERRORS

logger = logging.getLogger(__name__)


class APIError(exceptions.APIException):
    """Base of the API's own errors: a status, a default message and a code."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Bad request."
    default_code = "bad_request"


# DRF exception class -> protocol code, most specific first.
_CODES: list[tuple[type[Exception], str]] = [
    (exceptions.NotAuthenticated, "unauthorized"),
    (exceptions.AuthenticationFailed, "unauthorized"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.Throttled, "rate_limited"),
    (exceptions.ParseError, "bad_request"),
    (exceptions.UnsupportedMediaType, "bad_request"),
    (exceptions.NotAcceptable, "bad_request"),
    (exceptions.ValidationError, "bad_request"),
]

HTTP_ERROR_CODES = frozenset(
    {code for _, code in _CODES} | {"too_large", "unavailable", "internal", "unknown_namespace"}
)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"code": code, "message": message, **extra}


def _message(detail: Any) -> str:
    if isinstance(detail, dict):
        # simplejwt puts its human message in "detail"
        if "detail" in detail:
            return str(detail["detail"])
        return "Invalid request: " + ", ".join(sorted(detail))
    if isinstance(detail, list):
        return "; ".join(str(d) for d in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Turn any exception raised by a view into a protocol-style error response."""
    if isinstance(exc, RequestDataTooBig):  # a body over DATA_UPLOAD_MAX_MEMORY_SIZE: the client's fault
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(error_body("too_large", f"The request body is over {limit} bytes."), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, SERVICE_ERRORS):  # Redis or the database away (a revocation Redis could not record)
        logger.warning("backing service failed in %s: %r", context.get("view"), exc)
        return Response(error_body("unavailable", "A backing service is unavailable; try again."), status=503)
    if not isinstance(exc, exceptions.APIException):
        ref = uuid.uuid4().hex[:12]
        logger.error("Unhandled error in %s (ref %s)", context.get("view"), ref, exc_info=exc)
        return Response(error_body("internal", f"Internal server error (ref {ref})."), status=500)

    if isinstance(exc, APIError):
        code = exc.default_code
    else:
        code = next((c for cls, c in _CODES if isinstance(exc, cls)), "internal")
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        extra["errors"] = exc.detail
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    return Response(error_body(code, _message(exc.detail), **extra), status=exc.status_code, headers=headers)
