"""Mask configured secrets in every JSON and text answer of the HTTP edge, and in every text
message a WebSocket sends.

The messages the API returns come from many places: a camera's state message in ``/readyz`` and
the camera list (built from FFmpeg's errors), a rule reload's reason, an error's text. Each origin
redacts what it knows, but a secret quoted in a form it did not expect would still reach a viewer.
This middleware is the last net, the same mask the logs get
(:func:`safewatch.config.secrets.redact_secrets`): JSON and ``text/*`` bodies are masked before
they leave; images, video and other binary bodies pass untouched. A body that mentions no secret
(one regex pass, the usual case) is sent as it is; a JSON one that does is decoded, its strings
masked (never its keys, numbers or ``null``) and encoded again, so it stays valid JSON.

WebSockets get the same net, wrapped around their ``send``: each text message (the sockets'
JSON: a camera's once-a-second ``state`` message quotes the same runtime message ``/readyz``
does, and went out unmasked) and each close reason; binary messages (JPEG, MP4) pass untouched.
One wrapper for every socket, so a new message kind cannot forget it.

The site can change on reload, and the API may run in a process that received the site pickled;
so the site's secrets are registered here too, whenever the site object in force changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safewatch.config.loader import LoadedSite
from safewatch.config.secrets import SECRETS, redact_json, redact_secrets, register_loaded_site

__all__ = ["RedactResponses"]

_TEXTUAL = (b"application/json", b"text/", b"application/problem+json")


class RedactResponses:
    """ASGI middleware masking secrets in textual response bodies.

    Args:
        app: The wrapped application.
        site: The site in force (its secrets are registered when it changes).
    """

    def __init__(self, app: ASGIApp, site: Callable[[], LoadedSite]) -> None:
        self.app = app
        self._site = site
        self._registered: int | None = None

    def _register(self) -> None:
        site = self._site()
        if id(site) != self._registered:
            register_loaded_site(site)
            self._registered = id(site)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            self._register()
            await self.app(scope, receive, _masked_socket(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._register()
        if not len(SECRETS):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def masked(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                content_type = MutableHeaders(raw=message["headers"]).get("content-type", "")
                if content_type.encode().startswith(_TEXTUAL):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                clean = _masked(b"".join(chunks), start)
                headers = MutableHeaders(raw=start["headers"])
                if "content-length" in headers:
                    headers["content-length"] = str(len(clean))
                await send(start)
                await send({"type": "http.response.body", "body": clean, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, masked)


def _masked_socket(send: Send) -> Send:
    """``send`` of a WebSocket with its text messages and close reasons masked."""

    async def masked(message: Message) -> None:
        if len(SECRETS):
            if message["type"] == "websocket.send" and message.get("text") is not None:
                clean = _masked_text(message["text"], json_text=True)
                if clean is not None:
                    message = {**message, "text": clean}
            elif message["type"] == "websocket.close" and message.get("reason"):
                message = {**message, "reason": redact_secrets(message["reason"])}
        await send(message)

    return masked


def _masked_text(text: str, *, json_text: bool) -> str | None:
    """``text`` with secrets masked (as JSON, strings only, if ``json_text`` and it parses), or
    ``None`` when it mentions none (the usual case: one regex pass)."""
    redacted = redact_secrets(text)
    if redacted == text:
        return None
    if json_text:
        try:
            data = json.loads(text)
        except ValueError:
            pass
        else:
            return json.dumps(redact_json(data), ensure_ascii=False, separators=(",", ":"))
    return redacted


def _masked(body: bytes, start: Message) -> bytes:
    text = body.decode("utf-8", errors="surrogateescape")
    content_type = MutableHeaders(raw=start["headers"]).get("content-type", "")
    clean = _masked_text(text, json_text="json" in content_type)
    if clean is None:
        return body
    return clean.encode("utf-8", errors="surrogateescape")
