"""Alembic environment: runs migrations on the connection :mod:`safewatch.storage.migrate` gives.

safewatch never reads ``alembic.ini`` or a URL here: the caller has already opened the database
(with the site's URL resolved against the site file, and SQLite's pragmas) and taken the migration
lock, so this only configures the context on that connection. SQLite gets batch mode, because it
can only alter a table by copying it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from safewatch.storage.tables import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "safewatch migrations run through `safewatch db upgrade` "
        "(safewatch.storage.migrate), not the alembic command"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
