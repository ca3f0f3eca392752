"""Believe ``X-Forwarded-For`` / ``X-Forwarded-Proto`` only from the proxies the site names.

The client address feeds login throttling and the audit log, so it must not be something a client
can write. Uvicorn believes these headers from loopback by default; ``safewatch serve`` turns that
off (:class:`~safewatch.runtime.http_server.HttpServer`) and the app applies the site's own list
(``runtime.http.trusted_proxies``, empty by default) here instead, so the rule is the same under
any ASGI server and in tests. The header walk itself is uvicorn's: from the right, the first
address that is not a trusted proxy is the client.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

__all__ = ["install_trusted_proxies"]


def install_trusted_proxies(app: FastAPI, trusted: Sequence[str]) -> None:
    """Rewrite the request's client and scheme from proxy headers sent by ``trusted`` only.

    Args:
        app: The app; the middleware is added outermost, so every route, the auth gate and the
            audit log see the same address.
        trusted: IP addresses or CIDR networks of reverse proxies (empty: believe no one).
    """
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(trusted))
