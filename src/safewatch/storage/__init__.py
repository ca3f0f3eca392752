"""Persistence: SQL tables and repositories (SQLite by default, PostgreSQL to scale)."""

from safewatch.storage.engine import create_engine_for, resolve_url
from safewatch.storage.incident_repository import IncidentRepository, create_schema
from safewatch.storage.tables import Base, IncidentRow

__all__ = [
    "Base",
    "IncidentRepository",
    "IncidentRow",
    "create_engine_for",
    "create_schema",
    "resolve_url",
]
