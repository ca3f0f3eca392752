"""Alembic migrations of the safewatch schema, shipped inside the package.

Run them with ``safewatch db upgrade`` (or :func:`safewatch.storage.migrate.upgrade`); there is no
``alembic.ini``: :mod:`safewatch.storage.migrate` builds Alembic's configuration and hands it the
connection. New revisions go in ``versions/`` as ``vNNNN_<what>.py`` with ``revision = "NNNN"``.
"""
