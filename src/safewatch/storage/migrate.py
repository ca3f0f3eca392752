"""Bring a database's schema to what this safewatch needs (Alembic), or check that it is there.

Policy (documented in ``docs/deployment-storage.md``):

* **SQLite** (the embedded default, one process owns the file) is upgraded automatically when a
  repository opens it: a laptop install or the per-run database of ``safewatch audit`` just works.
* **Other engines** (PostgreSQL, shared by several processes and often by several versions during a
  rolling update) are never altered behind the operator's back: start-up checks the revision and
  refuses with the command to run (``safewatch db upgrade -c SITE``, as this safewatch was run and
  with the site file when the caller gives it: :mod:`safewatch.advice`).

An upgrade runs in one transaction under a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock
on PostgreSQL), so two processes starting together cannot both migrate, and a failed migration
leaves the previous schema. Databases created by the releases before migrations (``create_all``,
no ``alembic_version``) are recognised and stamped at the revision they match, never re-created.

Going back is a separate, explicit step (:func:`downgrade`, ``safewatch db downgrade``), run with
the newer safewatch before the older one is installed: only the newer one has the migrations to
undo. :func:`upgrade` refuses a target older than the database instead of doing nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from safewatch.advice import command_for_site
from safewatch.errors import StorageError
from safewatch.storage.engine import shown_url

__all__ = [
    "Revision",
    "UpgradeResult",
    "current_revision",
    "downgrade",
    "ensure_schema",
    "head_revision",
    "history",
    "undone_by",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")
"""The Alembic script directory, inside the package."""

_PG_LOCK = 0x5AFE_0DB0
"""Advisory lock key that serialises migrations on PostgreSQL."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One migration: its id, the one before it, and what it does (first docstring line)."""

    id: str
    down: str | None
    message: str


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What :func:`upgrade` (or :func:`downgrade`) did.

    Attributes:
        before: Revision found (``None`` for an empty or pre-migration database).
        after: Revision now.
        stamped: Revision a pre-migration database was recognised as, if it was one.
    """

    before: str | None
    after: str | None
    stamped: str | None = None


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest revision this safewatch ships."""
    head = _script().get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def history() -> list[Revision]:
    """Every migration, newest first."""
    revisions = []
    for script in _script().walk_revisions():
        down = script.down_revision
        message = (script.doc or "").strip().splitlines()[0] if script.doc else ""
        revisions.append(
            Revision(script.revision, down if isinstance(down, str) else None, message)
        )
    return revisions


def _order() -> list[str]:
    """The revision ids this safewatch ships, oldest first (the history is linear)."""
    return [revision.id for revision in reversed(history())]


def _resolved(revision: str) -> str | None:
    """The id ``revision`` names (``head`` included), ``None`` for ``base`` or what Alembic
    cannot resolve on its own (relative steps, unknown ids: left to the command)."""
    try:
        script = _script().get_revision(revision)
    except CommandError:
        return None
    return script.revision if script is not None else None


def _shown(engine: Engine) -> str:
    return shown_url(engine.url)


def _reason(exc: SQLAlchemyError) -> object:
    return getattr(exc, "orig", None) or exc


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, ``None`` when it has none (empty or pre-migration).

    Raises:
        StorageError: The database cannot be read.
    """
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read the schema revision of {_shown(engine)}: {_reason(exc)}"
        ) from exc


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; committed on success."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # pysqlite opens transactions lazily and never around DDL; take over so the whole
            # migration is one IMMEDIATE (write-locked) transaction.
            raw = connection.connection.driver_connection
            previous = raw.isolation_level  # type: ignore[union-attr]
            raw.isolation_level = None  # type: ignore[union-attr]
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    raw.rollback()  # type: ignore[union-attr]
                    raise
                raw.commit()  # type: ignore[union-attr]
            finally:
                raw.isolation_level = previous  # type: ignore[union-attr]
        else:
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK}
                    )
                yield connection


def _stamp_pre_migration(connection: Connection, config: Config) -> str | None:
    """Recognise a database made by ``create_all`` (before migrations) and stamp it."""
    inspector = inspect(connection)
    if "incidents" not in inspector.get_table_names():
        return None
    columns = {column["name"] for column in inspector.get_columns("incidents")}
    revision = "0002" if "clip" in columns else "0001"
    command.stamp(config, revision)
    return revision


@contextmanager
def _migrating(engine: Engine) -> Iterator[None]:
    """Database and Alembic errors of a migration as :class:`StorageError`."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate {_shown(engine)}: {_reason(exc)}") from exc
    except Exception as exc:  # Alembic's own errors (unknown revision, broken script)
        if exc.__class__.__module__.startswith("alembic"):
            raise StorageError(f"cannot migrate {_shown(engine)}: {exc}") from exc
        raise


def upgrade(
    engine: Engine, revision: str = "head", *, site_file: str | Path | None = None
) -> UpgradeResult:
    """Migrate the database to ``revision`` (default: the newest), under the migration lock.

    Args:
        engine: The database.
        revision: Where to go.
        site_file: The site file, for the command advised instead (``-c``; ``SITE`` when
            ``None``): advice without it failed when pasted ("Missing option '--config'"). The
            command itself is named as this safewatch was run (:mod:`safewatch.advice`).

    Raises:
        StorageError: The database refused, ``revision`` is unknown, or it is older than the
            database's (Alembic did nothing and it read as "already at": going back is
            :func:`downgrade`).
    """
    order = _order()
    target = _resolved(revision)
    with _migrating(engine), _locked(engine) as connection:
        config = _config(connection)
        before = MigrationContext.configure(connection).get_current_revision()
        if target in order and before in order and order.index(target) < order.index(before):
            raise StorageError(
                f"database {_shown(engine)} is at schema revision {before}, newer than "
                f"{target}: an upgrade never goes back; "
                f"`{command_for_site('db downgrade', site_file)} --revision {target}` does"
            )
        stamped = _stamp_pre_migration(connection, config) if before is None else None
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    return UpgradeResult(before, after, stamped)


def undone_by(engine: Engine, revision: str) -> list[Revision]:
    """The migrations a :func:`downgrade` to ``revision`` would undo, newest first: what it
    drops, for a confirmation. Empty when it would do nothing or refuse (it says why).

    Raises:
        StorageError: The database cannot be read.
    """
    order = _order()
    target, current = _resolved(revision), current_revision(engine)
    if target not in order or current not in order:
        return []
    newer = order[order.index(target) + 1 : order.index(current) + 1]
    return [r for r in history() if r.id in newer]


def downgrade(
    engine: Engine, revision: str, *, site_file: str | Path | None = None
) -> UpgradeResult:
    """Migrate the database back to ``revision`` (an id of :func:`history`), under the
    migration lock. What the later revisions added goes, with its rows (tables, columns).
    ``site_file`` is as for :func:`upgrade`.

    Raises:
        StorageError: ``revision`` is not one this safewatch ships, is newer than the
            database's, the database is newer than this safewatch (only the safewatch that
            upgraded it has the migrations to undo) or has no revision, or it refused.
    """
    order = _order()
    target = _resolved(revision)
    if target not in order:
        raise StorageError(
            f"cannot downgrade to {revision!r}: not a schema revision (`safewatch db history` "
            "lists them)"
        )
    with _migrating(engine), _locked(engine) as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        if before is None:
            raise StorageError(f"database {_shown(engine)} has no schema revision to go back from")
        if before not in order:
            raise StorageError(
                f"database {_shown(engine)} is at schema revision {before}, newer than this "
                f"safewatch knows (up to {order[-1]}): downgrade it with the safewatch that "
                "upgraded it"
            )
        if order.index(target) > order.index(before):
            raise StorageError(
                f"database {_shown(engine)} is at schema revision {before}, older than "
                f"{target}: `{command_for_site('db upgrade', site_file)} --revision {target}` "
                "goes forward"
            )
        command.downgrade(_config(connection), target)
        after = MigrationContext.configure(connection).get_current_revision()
    return UpgradeResult(before, after)


def ensure_schema(
    engine: Engine, *, auto_upgrade: bool | None = None, site_file: str | Path | None = None
) -> None:
    """Make sure the schema is current before the database is used (see the module docstring).

    Args:
        engine: The database.
        auto_upgrade: Upgrade when behind; ``None`` means only for SQLite.
        site_file: The site file, for the ``db upgrade`` advised when behind (as for
            :func:`upgrade`): it said ``--config SITE`` whatever the site.

    Raises:
        StorageError: The schema is behind (and may not be upgraded here) or newer than this
            safewatch knows, or the database cannot be read or migrated.
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    if current is not None and current not in _order():
        raise StorageError(
            f"database {_shown(engine)} has schema revision {current}, newer than this safewatch "
            f"knows (up to {head}): upgrade safewatch"
        )
    if auto_upgrade is None:
        auto_upgrade = engine.dialect.name == "sqlite"
    if not auto_upgrade:
        raise StorageError(
            f"database {_shown(engine)} is at schema revision {current or 'none'}, this "
            f"safewatch needs {head}: run `{command_for_site('db upgrade', site_file)}` first"
        )
    upgrade(engine)
