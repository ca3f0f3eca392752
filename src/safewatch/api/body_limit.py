"""Refuse request bodies over a size limit before they are read, with the API's one error shape.

Without a limit, a 50 MB body posted to the public login endpoint is read whole and parsed as JSON
(about +80 MB per request) before anything looks at it, by anyone, unauthenticated. This ASGI
middleware sits outside every route:

* a ``Content-Length`` over the limit is answered 413 at once, and the body is never received;
* a body without a length (chunked) is counted as it is received, and the first chunk that crosses
  the limit ends the request with 413: the server holds at most the limit plus one chunk.

The 413 answer is ``{"error": "too_large", ...}`` like every other error
(:mod:`safewatch.api.errors`). A path may have its own, larger limit (video uploads of audit
jobs, which stream to disk and check their own size).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safewatch.api.errors import error_response

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body crosses the limit (mapped to 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit is {limit} bytes")


class BodyLimit:
    """ASGI middleware enforcing a request-body size limit.

    Args:
        app: The wrapped application.
        max_bytes: Largest body for any path not in ``per_path``.
        per_path: Exact paths with a limit of their own.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(limit, scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            # Reached here only when no error handler turned it into a response.
            if started:
                raise
            await _refuse(limit, scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 413 and close the connection (the unread body makes it unusable)."""
    response = error_response(
        413,
        "too_large",
        f"request body too large: the limit is {limit} bytes",
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
