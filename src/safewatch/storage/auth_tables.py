"""Tables of the dashboard's users, sessions, API tokens and security audit log.

They live in the same database as the incidents (one thing to back up, one connection pool) and
in the same :class:`~safewatch.storage.tables.Base`, so the migrations-vs-models test covers them.
Secrets are never stored: passwords as argon2 hashes, session and API tokens as SHA-256 of a
256-bit random value (enough entropy that a slow hash would add nothing but latency), so a leaked
database opens no session. The audit log is append-only by convention and separate from the
incidents' hash chain: it records who *looked* (evidence views, reveals, logins, admin changes),
which is not part of any incident's story.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safewatch.storage.tables import Base

__all__ = ["ApiTokenRow", "AuditLogRow", "SessionRow", "UserRow"]


class UserRow(Base):
    """A dashboard user: a name, an argon2 password hash and one role."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    last_login_at: Mapped[float | None] = mapped_column(Double, nullable=True)


class SessionRow(Base):
    """A browser session: keyed by the SHA-256 of the cookie's value, with its CSRF token."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Double)
    last_seen_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double)
    client: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (Index("ix_sessions_user_id", "user_id"),)


class ApiTokenRow(Base):
    """A long-lived token for scripts and scrapers (``Authorization: Bearer ...``)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Double, nullable=True)

    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"),)


class AuditLogRow(Base):
    """One security-relevant action: who, what, on what, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Double)
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(512), nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    client: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor", "actor", "at"),
    )
