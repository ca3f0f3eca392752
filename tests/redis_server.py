"""A real, throwaway ``redis-server`` for the bus tests (Debian's package; ``.ci/run`` installs it).

Started on a free loopback port in a temporary folder, without persistence (``--save ''``,
``--appendonly no``), so :meth:`RedisServer.restart` is what a crashed Redis looks like to its
clients: the connection drops and the data is gone. Nothing here imports pytest (benchmarks and
the cluster tests use it too).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from db_servers import free_port
from patience import poll

__all__ = ["RedisServer", "redis_unavailable"]


def redis_unavailable() -> str | None:
    """Why a throwaway Redis cannot be started here, or ``None`` when it can."""
    if shutil.which("redis-server") is None:
        return "redis-server not found: apt-get install redis-server"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis client is not installed: pip install 'safewatch[cluster]'"
    return None


@dataclass
class RedisServer:
    """A running ``redis-server``; :meth:`start` it, :meth:`stop` it."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls) -> RedisServer:
        """A new server in a new temporary folder.

        Raises:
            RuntimeError: ``redis_unavailable()`` says why, or it did not answer within 10 s.
        """
        reason = redis_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        server = cls(Path(tempfile.mkdtemp(prefix="safewatch-redis-")), free_port())
        server._launch()
        return server

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _launch(self) -> None:
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.root),
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._log_tail()}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")

        try:
            poll(answers, 10.0, "redis-server to answer PING", 0.05, (OSError,))
        except AssertionError:
            self.kill()
            raise RuntimeError(
                f"redis-server did not answer within 10 s: {self._log_tail()}"
            ) from None

    def _log_tail(self) -> str:
        path = self.root / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def kill(self) -> None:
        """``kill -9`` the server (its data, kept in memory only, is lost)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        """Kill the server, stay down ``down_seconds``, start it again empty on the same port."""
        self.kill()
        time.sleep(down_seconds)
        self._launch()

    def stop(self) -> None:
        """Kill the server and delete its folder."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
