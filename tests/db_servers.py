"""Real servers for the storage tests: a throwaway PostgreSQL and an S3-compatible (moto) server.

PostgreSQL comes from Debian's binaries (``apt-get install postgresql``, which ``.ci/run`` does):
``initdb`` into a temporary folder, ``pg_ctl start`` on a free loopback port, trust auth, fsync
off (throwaway data), stopped and deleted at the end. ``initdb`` refuses to run as root, so as root
it runs as the ``postgres`` system user that the Debian package creates. Each test gets its own
schema (``CREATE SCHEMA``, a few milliseconds) chosen through the URL's ``search_path`` option,
so tests never see each other's rows.

moto runs in server mode (``ThreadedMotoServer``) on 127.0.0.1 and a free port, so boto3 talks
HTTP to it exactly as it would to MinIO or AWS.

Also used by ``bench/evidence.py``, so nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MotoS3", "PostgresServer", "free_port", "postgres_unavailable"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pg_bin() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def postgres_unavailable() -> str | None:
    """Why a throwaway PostgreSQL cannot be started here, or ``None`` when it can."""
    if _pg_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'safewatch[postgres]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return None


@dataclass
class PostgresServer:
    """A running throwaway PostgreSQL server; :meth:`start` it, :meth:`stop` it."""

    root: Path
    port: int
    bin: Path
    user: str | None

    @classmethod
    def start(cls, *, durable: bool = False) -> PostgresServer:
        """initdb + pg_ctl start in a new temporary folder.

        Args:
            durable: Keep PostgreSQL's default fsync and synchronous commit (benchmarks); tests
                turn them off, since their data is thrown away.

        Raises:
            RuntimeError: ``postgres_unavailable()`` says why, or a step failed (with its log).
        """
        reason = postgres_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        bin_dir = _pg_bin()
        assert bin_dir is not None
        root = Path(tempfile.mkdtemp(prefix="safewatch-pg-"))
        user = "postgres" if os.geteuid() == 0 else None
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        server = cls(root, free_port(), bin_dir, user)
        try:
            server._run(
                "initdb",
                "-D",
                str(root / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            )
            options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1"
            if not durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            server._run(
                "pg_ctl", "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o", options,
                "start",
            )  # fmt: skip
            server.execute("CREATE DATABASE safewatch_test")
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed: {done.stderr.strip()}\n{tail}")

    def url(self, database: str = "safewatch_test", schema: str | None = None) -> str:
        """SQLAlchemy URL (psycopg 3) of a database, optionally pinned to one schema."""
        url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"
        if schema is not None:
            url += f"?options=-csearch_path%3D{schema}"
        return url

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement in autocommit (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(sql.encode())

    @contextlib.contextmanager
    def fresh_schema(self) -> Iterator[str]:
        """A URL whose connections see only a new, empty schema; dropped afterwards."""
        schema = f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f"CREATE SCHEMA {schema}", "safewatch_test")
        try:
            yield self.url(schema=schema)
        finally:
            self.execute(f"DROP SCHEMA {schema} CASCADE", "safewatch_test")

    def stop(self) -> None:
        """Stop the server at once (its data is throwaway) and delete its folder."""
        if (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class MotoS3:
    """An S3-compatible server (moto) on a free loopback port."""

    endpoint_url: str
    _server: Any
    _client: Any = None

    @classmethod
    def start(cls) -> MotoS3:
        """Start moto's threaded server; its request log is silenced."""
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(f"http://{host}:{port}", server)

    def client(self) -> Any:
        """A boto3 S3 client for this server (fixed test credentials), made once: building a
        boto3 client takes a few hundred milliseconds."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._client

    def create_bucket(self) -> str:
        """A new, empty bucket with a unique name."""
        name = f"evidence-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        """Stop the server thread."""
        self._server.stop()
