"""Build the SQLAlchemy engine from the site file's database URL.

SQLite is the embedded default, so its settings matter: WAL lets the API read while a camera worker
writes, a busy timeout turns brief lock contention into a short wait instead of an error, and
foreign keys are off in SQLite unless asked for. Relative SQLite paths are resolved against the site
file's folder (``base_dir``) so a site runs the same whatever the working directory.

``read_only`` is for a tool that reads another process's database and must leave it exactly as it
is (``safewatch backtest`` reading the reviewed incidents of a live site): an SQLite file is opened
through a ``mode=ro`` URI, so neither a missing file nor a 0-byte one is created or given a schema
and the journal mode is left alone (switching it to WAL is a write). Reading a WAL database
read-only still creates its ``-wal`` and ``-shm`` files, which only a read-write connection may
remove: when neither was there at the start, each read-only connection removes them as it closes
(:func:`_forget_wal_files`), so the folder is left as it was found.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from safewatch.errors import StorageError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "create_engine_for",
    "resolve_url",
    "shown_url",
    "snapshot",
    "transaction",
]

BUSY_TIMEOUT_MS = 5000
"""How long an SQLite writer waits for a lock before failing (milliseconds)."""


_BACKENDS = ("sqlite", "postgresql")
"""The databases safewatch supports (its migrations and queries are tested on these)."""


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def shown_url(url: URL) -> str:
    """``url`` as messages show it: no password, no user name, no secret query value.

    ``render_as_string(hide_password=True)`` masks only the password of the user info; libpq
    also takes one as a query value (``postgresql://sw@db/sw?password=...``), and that was
    printed whole by every ``db`` command and error.
    """
    # Imported here: the ``safewatch.ingest`` package pulls in PyAV, which storage has no use for.
    from safewatch.ingest.redact import redact_url

    if _is_sqlite(url) and url.query.get("uri") == "true":
        # A read-only engine's file URI (create_engine_for) is shown as the path it opens, not
        # as "sqlite:///file%3A///...?mode=ro&uri=true" (ensure_schema's messages show it).
        path = unquote(urlsplit(str(url.database)).path)
        url = url.set(database=path, query={})
    # The user info is masked on the parsed URL, whatever the host looks like (none, for a
    # unix socket: ``postgresql://user:pw@/db?host=/run/postgresql``), then the query values.
    masked = url.set(
        username=None if url.username is None else "***",
        password=None if url.password is None else "***",
    )
    return redact_url(masked.render_as_string(hide_password=False))


def resolve_url(url: str, base_dir: Path) -> URL:
    """Parse ``url`` and make a relative SQLite file path absolute under ``base_dir``.

    Raises:
        StorageError: The URL cannot be parsed, or names a database other than SQLite and
            PostgreSQL (``postgres://`` is said to be ``postgresql://``). The message shows it
            redacted, never raw or as its ``repr`` (a URL that does not parse still holds its
            password), and a port that is not a number is said so (``make_url`` raises a bare
            ``ValueError`` for it, which was a traceback).
    """
    from safewatch.ingest.redact import redact_url

    try:
        parsed = make_url(url)
    except ArgumentError:
        # Placeholders in <>: a user:password@ in the hint was masked like a real one (***:***).
        raise StorageError(
            f"invalid database URL {redact_url(url)}: not of the form "
            "postgresql://<user>:<password>@<host>:<port>/<database> or sqlite:///<path>"
        ) from None
    except ValueError:  # the only one make_url raises: int() of the port
        raise StorageError(
            f"invalid database URL {redact_url(url)}: the port is not a number"
        ) from None
    # Said here, so check-config refuses them too: SQLAlchemy's own words were "Can't load
    # plugin: sqlalchemy.dialects:postgres" (Heroku-style postgres://) and, for another
    # database, the missing driver ("No module named 'MySQLdb'").
    backend = parsed.get_backend_name()
    if backend == "postgres":
        raise StorageError(
            f"invalid database URL {redact_url(url)}: use postgresql://, not postgres://"
        )
    if backend not in _BACKENDS:
        raise StorageError(
            f"unsupported database {redact_url(url)}: safewatch supports sqlite and postgresql"
        )
    if _is_sqlite(parsed) and not _is_memory(parsed):
        path = Path(str(parsed.database)).expanduser()
        if not path.is_absolute():
            path = (base_dir / path).resolve()
        parsed = parsed.set(database=str(path))
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL sync is durable against application crashes and much faster than FULL.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_read_only_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _forget_wal_files(uri: str) -> None:
    """Let SQLite remove the ``-wal``/``-shm`` files a read-only connection made it create.

    A read-only connection to a WAL database creates both files (it needs the shared-memory
    index) but cannot remove them: only a read-write connection closing last checkpoints the WAL
    and deletes them. So one is opened (``mode=rw``: never creates the file), reads, and closes.
    SQLite decides under its own locks: while another process (a server started meanwhile) has
    the database open, nothing is removed; the WAL it just made is empty, so the checkpoint
    writes nothing to the database file. Deleting the files directly could lose the committed
    rows of a server that opened the database in the meantime.
    """
    try:
        closer = sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            closer.execute("SELECT count(*) FROM sqlite_master").fetchall()
        finally:
            closer.close()
    except sqlite3.Error:
        pass  # not writable by this user, or gone: the files stay, as before


def _read_only_connection(path: Path) -> type[sqlite3.Connection]:
    """The DB-API connection class of a read-only engine on ``path``: it removes the WAL files
    it made the database create when it closes, if the folder had neither at the start (a
    ``-wal`` found there may hold committed rows of a running server: it is never touched).
    """
    wal_files = (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
    found_any = any(f.exists() for f in wal_files)
    uri = path.as_uri()

    class ReadOnlyConnection(sqlite3.Connection):
        def close(self) -> None:
            super().close()
            if not found_any and any(f.exists() for f in wal_files):
                _forget_wal_files(uri)

    return ReadOnlyConnection


def create_engine_for(url: str, base_dir: Path, *, read_only: bool = False) -> Engine:
    """Create an engine for ``url`` and check that the database can be opened.

    The connection is tried once here so a wrong path or a read-only folder is reported at start-up
    with the database named, not on the first incident minutes later.

    Args:
        url: SQLAlchemy URL from :class:`safewatch.config.site.StorageConfig`.
        base_dir: Folder relative SQLite paths are relative to (the site file's folder).
        read_only: Open an SQLite file read-only (see the module docstring); it must exist.
            Other engines are opened as usual (only a caller that never writes stays read-only).

    Raises:
        StorageError: The URL is invalid, the folder cannot be created, or the database cannot be
            opened (or, read-only, does not exist).
    """
    parsed = resolve_url(url, base_dir)
    shown = shown_url(parsed)
    kwargs: dict[str, Any] = {}
    read_only = read_only and _is_sqlite(parsed) and not _is_memory(parsed)
    if _is_sqlite(parsed):
        if _is_memory(parsed):
            # One shared connection, or every new connection would see an empty database.
            kwargs["poolclass"] = StaticPool
        elif read_only:
            path = Path(str(parsed.database))
            if not path.is_file():
                raise StorageError(f"database {shown} does not exist")
            parsed = parsed.set(database=path.as_uri(), query={"mode": "ro", "uri": "true"})
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "factory": _read_only_connection(path),
            }
        else:
            folder = Path(str(parsed.database)).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the database folder {folder}: {exc.strerror or exc}"
                ) from exc
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot use database {shown}: {exc}") from exc
    if _is_sqlite(parsed):
        pragmas = _sqlite_read_only_pragmas if read_only else _sqlite_pragmas
        event.listen(engine, "connect", pragmas)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = getattr(exc, "orig", None) or exc
        raise StorageError(f"cannot open database {shown}: {reason}") from exc
    return engine


@contextmanager
def transaction(engine: Engine, action: str) -> Iterator[Session]:
    """A session in one transaction, committed when the block ends. A SQLAlchemy error (the
    database down, a lock timeout) becomes a :class:`StorageError` saying ``cannot {action}``
    with the database's own reason, so that callers handle one error type on every backend.
    Objects stay usable after the commit (``expire_on_commit=False``)."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise StorageError(f"cannot {action}: {reason}") from exc


@contextmanager
def snapshot(engine: Engine, action: str) -> Iterator[Session]:
    """A read-only transaction in which every statement sees the database as the first one did.

    :func:`transaction` is not enough for several reads that must agree with each other, such as
    a report whose total, per-day chart and incident table come from separate queries: SQLite's
    driver sends no ``BEGIN`` before a ``SELECT``, so each statement reads the latest commit, and
    PostgreSQL's default READ COMMITTED gives each statement a fresh snapshot. An incident stored
    between two of them would be counted in one and missing from the other. Here SQLite gets an
    explicit (deferred) ``BEGIN``, whose WAL snapshot is fixed by the first read, and PostgreSQL
    a REPEATABLE READ, READ ONLY transaction; writers are not blocked on either.

    Raises:
        StorageError: As :func:`transaction`.
    """
    with transaction(engine, action) as session:
        connection = session.connection()
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN")
        elif engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield session
