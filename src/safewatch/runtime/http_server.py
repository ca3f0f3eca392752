"""Run the API app with uvicorn on a background thread of the server process.

The socket is bound here, before uvicorn starts, so "address already in use" is a clear
:class:`~safewatch.errors.ConfigError` at start-up rather than a log line from a dying thread, and
port 0 yields the port actually chosen. Uvicorn installs no signal handlers off the main thread;
the ``serve`` command owns SIGTERM and SIGINT and stops this server last, so ``/readyz`` reports
``stopping`` while cameras finish.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from safewatch.errors import ConfigError

__all__ = ["HttpServer", "bind_listener"]


class _Server(uvicorn.Server):
    """uvicorn's server, remembering its event loop (for :meth:`HttpServer.call_soon`)."""

    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)


def bind_listener(host: str, port: int, backlog: int = 512) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    The backlog is larger than uvicorn's default of 128: a burst of new connections while the
    server is busy (or its API process restarts) waits in the kernel instead of being refused.

    Raises:
        ConfigError: The address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {error.strerror or error}", field="runtime.http"
        ) from None
    sock.listen(backlog)
    return sock


class HttpServer:
    """uvicorn serving ``app`` on ``host:port`` (or on a listening ``sock``) from a daemon thread.

    ``sock`` is how the API process serves the socket its server bound (see
    :mod:`safewatch.runtime.api_link`).

    Raises:
        ConfigError: The address cannot be bound (in use, not local, no permission).
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sock: socket.socket | None = None,
    ) -> None:
        self._socket = sock if sock is not None else bind_listener(host, port)
        name = self._socket.getsockname()
        self.host = str(name[0])
        self.port = int(name[1])
        # proxy_headers=False: uvicorn would believe X-Forwarded-For from loopback; the app
        # applies the site's own trusted proxies instead (safewatch.api.proxies). The lifespan
        # is on so the app's shutdown stops what it started (the live video feeds' threads).
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            proxy_headers=False,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="http", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.02)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the server's event loop (from any thread).

        The API process answers the server's liveness pings this way, so a stuck loop, not
        only a dead process, goes unanswered.

        Raises:
            RuntimeError: The server is not running.
        """
        loop = self._server.loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the HTTP server is not running")
        loop.call_soon_threadsafe(callback)

    def stop(self, timeout: float = 8.0) -> None:
        """Stop accepting, finish open requests and run the app's shutdown. The default
        covers uvicorn's 2 s for open requests and the live video feeds' 3 s to stop
        (:func:`~safewatch.api.live_video.close_at_shutdown`)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()
