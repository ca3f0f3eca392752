"""A real RTSP camera for tests: Debian's GStreamer RTSP server serving an H.264 file.

Two halves in one file. Run as a script under the *system* interpreter (``/usr/bin/python3``, which
has the ``gi`` bindings; the project's virtual environment does not), it is the server:
``/usr/bin/python3 rtsp_server.py VIDEO.mp4 PORT [USER PASSWORD]``; it prints ``ready`` once it
listens. Imported by pytest, :class:`RtspCamera` starts, kills and restarts that process on a
fixed port, which is a real camera outage for reconnect tests.

The served file plays once per client from its start; :func:`looped_clip` makes a long copy of a
short clip (stream copy, no re-encoding) so a test never reaches its end.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
MOUNT = "/cam1"

__all__ = ["MOUNT", "SYSTEM_PYTHON", "RtspCamera", "free_port", "looped_clip", "rtsp_unavailable"]


@functools.cache
def rtsp_unavailable() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or ``None`` when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing (the RTSP test server runs under the system Python)"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [e for e in ('qtdemux', 'h264parse', 'rtph264pay') "
        "if Gst.ElementFactory.find(e) is None]; print(','.join(missing))"
    )
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {SYSTEM_PYTHON}: {error}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        return (
            "GStreamer RTSP server bindings are missing (apt install gir1.2-gst-rtsp-server-1.0 "
            f"python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad): {last}"
        )
    if result.stdout.strip():
        return (
            f"GStreamer elements missing: {result.stdout.strip()} (install gstreamer1.0-plugins-*)"
        )
    return None


def free_port() -> int:
    """A TCP port nobody listens on right now (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def looped_clip(clip: Path, out: Path, repeats: int = 10) -> Path:
    """Write ``repeats`` back-to-back copies of ``clip`` to ``out`` by stream copy.

    Needs the ``ffmpeg`` program; without it the clip itself is returned (it plays once).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return clip
    listing = out.with_suffix(".txt")
    path = str(clip).replace("'", "'\\''")
    listing.write_text(f"file '{path}'\n" * repeats)
    command = [ffmpeg, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
    subprocess.run([*command, "-c", "copy", str(out)], check=True, timeout=120)
    return out


class RtspCamera:
    """The GStreamer RTSP server as a subprocess with a stable port, for outage tests.

    Args:
        video: H.264 MP4 file to serve at ``rtsp://127.0.0.1:PORT/cam1``.
        port: Port to listen on; a free one by default. It stays the same across restarts.
        credentials: ``(user, password)`` to require RTSP basic authentication.
    """

    def __init__(
        self,
        video: Path,
        port: int | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.video = video
        self.port = port or free_port()
        self.credentials = credentials
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The stream URL, with credentials when the server requires them."""
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{MOUNT}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it prints ``ready``.

        Raises:
            RuntimeError: It exited or stayed silent for ``timeout`` seconds.
        """
        if self.running:
            return
        args = [SYSTEM_PYTHON, "-u", str(Path(__file__).resolve()), str(self.video), str(self.port)]
        if self.credentials:
            args += list(self.credentials)
        # The restart may come right after a kill: wait for the kernel to release the port.
        deadline = time.monotonic() + timeout
        while not _port_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self._process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the server prints "ready" or dies with a trace
        if line.strip() != "ready":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=2)
            rest = self._process.stdout.read() if self._process.poll() is not None else ""
            self.kill()
            raise RuntimeError(f"RTSP server did not start: {line}{rest}".strip())

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL): to clients it is a camera losing power."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def restart(self) -> None:
        """Kill and start again on the same port."""
        self.kill()
        self.start()

    def __enter__(self) -> RtspCamera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _serve(video: str, port: str, user: str | None, password: str | None) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    location = video.replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )'
    )
    factory.set_shared(False)  # each client starts at the beginning of the file
    if user is not None and password is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(
            Gst.Structure.new_from_string(
                f"{user}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {port}", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 5):
        sys.exit("usage: rtsp_server.py VIDEO PORT [USER PASSWORD]")
    _serve(sys.argv[1], sys.argv[2], *(sys.argv[3:5] if len(sys.argv) == 5 else (None, None)))
