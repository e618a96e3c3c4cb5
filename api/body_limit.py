"""Request bodies over the size limit are refused before they are read whole (SPEC section 10).

Starlette's own ``RequestBodyLimitMiddleware`` answers a body whose Content-Length is too large
in plain text; this one answers JSON, like every other error of the API.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(limit: int) -> str:
    return f"request body is larger than the limit max_body_bytes={limit}"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, detail=_too_large(limit))


class BodyLimitMiddleware:
    """413 for a request body of more than ``max_bytes``.

    A Content-Length above the limit is answered at once, without reading anything. Otherwise
    (chunked uploads, or a Content-Length that lies) the bytes are counted as the app receives
    them, and ``BodyTooLarge`` is raised inside the app as soon as they pass the limit, so that
    no request holds more than ``max_bytes`` plus one chunk.

    Requests for which ``exempt(scope)`` is true pass unchecked: routes that store their body
    as it arrives, in bounded memory, and bound its size themselves.
    """

    def __init__(self, app: ASGIApp, max_bytes: int,
                 exempt: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt is not None and self.exempt(scope)):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": _too_large(self.max_bytes)},
                                    status_code=status.HTTP_413_CONTENT_TOO_LARGE)
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)
