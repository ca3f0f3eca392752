"""Security headers on every response, and cache control for data.

The pages load only their own scripts and styles (no inline script: the CSRF token travels in a
``<meta>`` tag, page data in ``data-`` attributes), so the Content-Security-Policy can forbid
everything else: injected markup cannot run script or send data anywhere. Frames from a media
server (MediaMTX's WebRTC player) are allowed only for the origins the site file names. Pages
cannot be framed (clickjacking), responses are not MIME-sniffed, referrers do not leave the site,
and authenticated data is never cached by the browser or a proxy (``Cache-Control: no-store``),
except static files, which hold no data.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "content_security_policy"]


def content_security_policy(frame_origins: Iterable[str] = ()) -> str:
    """The CSP of every response; ``frame_origins`` may be embedded (live video players)."""
    frames = " ".join(sorted(set(frame_origins))) or "'none'"
    media = " ".join(["'self'", "blob:", *sorted(set(frame_origins))])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"media-src {media}",
            "connect-src 'self'",
            f"frame-src {frames}",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


class SecurityHeaders:
    """ASGI middleware adding the headers described in the module docstring.

    Args:
        app: The wrapped application.
        frame_origins: Origins of media-server players the live view may embed.
    """

    def __init__(self, app: ASGIApp, frame_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.csp = content_security_policy(frame_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")
        https = scope.get("scheme") == "https"

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", self.csp)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
                headers.setdefault(
                    "Permissions-Policy", "camera=(), microphone=(), geolocation=(), usb=()"
                )
                if https:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
                if static:
                    headers.setdefault("Cache-Control", "public, max-age=3600")
                else:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, add_headers)
