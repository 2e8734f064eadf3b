"""WhiteNoise for an ASGI server: static files without a synchronous iterator.

WhiteNoise answers with a `FileResponse` over the open file, a synchronous iterator that Django's
ASGI handler warns about ("StreamingHttpResponse must consume synchronous iterators") and then
reads chunk by chunk, each read on a thread of its own. Here a file up to INLINE_BYTES (every
static file of this project) goes out as one body, read at once; a larger one streams through an
asynchronous iterator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import IO, Any

from django.http import HttpResponse, StreamingHttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

INLINE_BYTES = 1 << 20
CHUNK_BYTES = 1 << 16


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
            yield chunk
    finally:
        file.close()


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise's middleware (same settings, same headers), with an ASGI-friendly body."""

    @staticmethod
    def serve(static_file: Any, request: Any) -> HttpResponse | StreamingHttpResponse:
        found = static_file.get_response(request.method, request.META)
        headers = dict(found.headers)
        length = int(headers.get("Content-Length") or 0)
        if found.file is None:  # HEAD, 304, 416: no body
            response: HttpResponse | StreamingHttpResponse = HttpResponse(status=int(found.status))
        elif length <= INLINE_BYTES:
            with found.file as file:
                response = HttpResponse(file.read(), status=int(found.status))
        else:
            response = StreamingHttpResponse(_chunks(found.file), status=int(found.status))
        del response["Content-Type"]  # WhiteNoise's headers say it
        for key, value in found.headers:
            response[key] = value
        return response
