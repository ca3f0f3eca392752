"""A real local HTTP server that serves a folder, standing in for the internet in download tests.

``python tests/mirror_server.py FOLDER`` runs it as its own process (prints ``ready PORT``); the
:func:`serve_folder` context manager runs it on a thread. Every request path is recorded, so a test
can say which files a download asked for and in what order.
"""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MirrorServer", "serve_folder"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        server: MirrorServer = self.server  # type: ignore[assignment]
        server.hits.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class MirrorServer(http.server.ThreadingHTTPServer):
    """Serves one folder on 127.0.0.1; ``hits`` lists the paths asked for."""

    hits: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serve_folder(folder: Path) -> Iterator[MirrorServer]:
    """Serve ``folder`` over HTTP on a free port until the block ends."""
    handler = functools.partial(_Handler, directory=str(folder))
    server = MirrorServer(("127.0.0.1", 0), handler)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


if __name__ == "__main__":
    with serve_folder(Path(sys.argv[1])) as running:
        print(f"ready {running.server_address[1]}", flush=True)
        threading.Event().wait()
