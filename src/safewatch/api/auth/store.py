"""Users, sessions, API tokens and the audit log, in the site's database.

Every method runs in its own short transaction, so one store is shared by all request threads.
Session cookies and API tokens are 256-bit random values handed out once; only their SHA-256 is
stored, so reading the database (a backup, a leaked file) yields no usable credential. Sessions end
after ``idle`` seconds without a request or ``lifetime`` seconds in all, whichever comes first;
changing a user's password or role, or disabling them, ends their sessions.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from safewatch.api.auth.passwords import (
    check_password_policy,
    hash_password,
    needs_rehash,
    verify_password,
)
from safewatch.api.auth.principal import ROLES, Role
from safewatch.errors import NotFound, SafewatchError, StorageError
from safewatch.storage.auth_tables import ApiTokenRow, AuditLogRow, SessionRow, UserRow
from safewatch.storage.engine import transaction
from safewatch.storage.migrate import ensure_schema

__all__ = [
    "TOKEN_EXPIRES_MAX",
    "TOKEN_PREFIX",
    "AuditRecord",
    "AuthStore",
    "IssuedToken",
    "SessionInfo",
    "TokenInfo",
    "User",
    "UserExists",
    "check_token_name",
]

TOKEN_PREFIX = "swt_"
"""API tokens start with this, so a leaked one is easy to find with secret scanners."""
TOKEN_EXPIRES_MAX = 1e11
"""Latest expiry (Unix seconds, in the year 5138) a token may be given: the API's request body
and ``safewatch users token --days`` refuse later ones. Dates are shown up to the year 9999
only; a token issued further out made ``users tokens`` fail ("year 10240 is out of range")."""

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_TOUCH_EVERY = 60.0
"""Seconds between writes of a session's last-seen time or a token's last use (not per request)."""


class UserExists(SafewatchError):
    """A user of that name exists already (HTTP 409)."""

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"user {username!r} exists already")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_username(username: str) -> str:
    """Return ``username`` if it is acceptable, else raise ``ValueError`` saying what is allowed."""
    if not _USERNAME.match(username):
        raise ValueError(
            "a user name is 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter "
            f"or digit; got {username!r}"
        )
    return username


def check_token_name(name: str) -> str:
    """Return ``name`` stripped if it names a token (1-64 characters), else raise ``ValueError``.

    Used by :meth:`AuthStore.create_token` and by the API's request body: "blank" is what
    ``str.strip`` removes (``\\x1c`` too), which a JSON-schema pattern such as ``\\S`` does not
    mirror, so the request is refused with this message (422) before the store is reached.

    Any viewer names their own tokens, and ``safewatch users tokens`` shows the names on an
    admin's terminal: control characters (escape sequences) and other non-printable ones are
    refused here.
    """
    name = name.strip()
    if not name or len(name) > 64:
        raise ValueError("a token needs a name of 1-64 characters (what uses it)")
    bad = next((char for char in name if not char.isprintable()), None)
    if bad is not None:
        raise ValueError(
            f"a token name must not contain control or other non-printable characters "
            f"(found {bad!r} at position {name.index(bad) + 1})"
        )
    return name


def check_role(role: str) -> Role:
    """Return ``role`` if it is one of :data:`ROLES`, else raise ``ValueError``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    return role


@dataclass(frozen=True, slots=True)
class User:
    """A user as the API shows it (never the hash)."""

    id: int
    username: str
    role: Role
    active: bool
    created_at: float
    last_login_at: float | None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session."""

    id: str
    user_id: int
    csrf_token: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as listed (never the secret)."""

    id: int
    username: str
    name: str
    prefix: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new API token: ``token`` is shown once and never stored."""

    token: str
    info: TokenInfo


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit-log line."""

    id: int
    at: float
    actor: str | None
    action: str
    subject: str | None
    detail: dict[str, Any]
    client: str | None


def _user(row: UserRow) -> User:
    return User(
        row.id, row.username, check_role(row.role), row.active, row.created_at, row.last_login_at
    )


def _token_info(row: ApiTokenRow, username: str) -> TokenInfo:
    return TokenInfo(
        row.id,
        username,
        row.name,
        row.prefix,
        row.created_at,
        row.expires_at,
        row.last_used_at,
        row.revoked_at,
    )


class AuthStore:
    """Users, sessions, tokens and audit records in one SQL database.

    Args:
        engine: The site's database (the incidents' one).
        clock: Wall clock (injectable for tests).
        lifetime: Longest a session lives, seconds (default 7 days).
        idle: Longest a session lives without a request, seconds (default 12 hours: a shift).
        auto_upgrade: Migrate an outdated schema; ``None`` means only for SQLite.

    Raises:
        StorageError: The schema is outdated and may not be migrated here.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        lifetime: float = 7 * 86400.0,
        idle: float = 12 * 3600.0,
        auto_upgrade: bool | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.lifetime = lifetime
        self.idle = idle
        self.changes = 0
        """Counts committed changes that can end or narrow someone's access (a user updated or
        deleted, a session ended, a token revoked); :class:`~safewatch.api.auth.gate.AuthGate`
        drops the principals it cached when it moves."""
        ensure_schema(engine, auto_upgrade=auto_upgrade)

    def _session(self, action: str) -> AbstractContextManager[Session]:
        return transaction(self._engine, action)

    @staticmethod
    def _row(session: Session, username: str) -> UserRow:
        row = session.scalar(select(UserRow).where(UserRow.username == username))
        if row is None:
            raise NotFound("user", username)
        return row

    # -- users -------------------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: str) -> User:
        """Create a user.

        Raises:
            ValueError: Bad name, role or password (too short).
            UserExists: The name is taken.
        """
        check_username(username)
        checked = check_role(role)
        check_password_policy(password)
        now = self._clock()
        row = UserRow(
            username=username,
            password_hash=hash_password(password),
            role=checked,
            active=True,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._session(f"add user {username}") as session:
                if session.scalar(select(UserRow.id).where(UserRow.username == username)):
                    raise UserExists(username)
                session.add(row)
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise UserExists(username) from None
            raise
        return _user(row)

    def users(self) -> list[User]:
        """Every user, by name."""
        with self._session("list users") as session:
            return [_user(r) for r in session.scalars(select(UserRow).order_by(UserRow.username))]

    def count_users(self) -> int:
        """How many users exist."""
        with self._session("count users") as session:
            return int(session.scalar(select(func.count()).select_from(UserRow)) or 0)

    def user(self, username: str) -> User:
        """The user of that name.

        Raises:
            NotFound: No such user.
        """
        with self._session(f"read user {username}") as session:
            return _user(self._row(session, username))

    def update_user(
        self,
        username: str,
        *,
        password: str | None = None,
        role: str | None = None,
        active: bool | None = None,
    ) -> User:
        """Change a user's password, role or active flag; their sessions end.

        Raises:
            NotFound: No such user.
            ValueError: Bad role or password.
        """
        if password is not None:
            check_password_policy(password)
        checked = check_role(role) if role is not None else None
        with self._session(f"update user {username}") as session:
            row = self._row(session, username)
            if password is not None:
                row.password_hash = hash_password(password)
            if checked is not None:
                row.role = checked
            if active is not None:
                row.active = active
            row.updated_at = self._clock()
            session.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            user = _user(row)
        self.changes += 1
        return user

    def delete_user(self, username: str) -> None:
        """Remove a user with their sessions and tokens.

        Raises:
            NotFound: No such user.
        """
        with self._session(f"delete user {username}") as session:
            row = self._row(session, username)
            session.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            session.execute(delete(ApiTokenRow).where(ApiTokenRow.user_id == row.id))
            session.delete(row)
        self.changes += 1

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the name exists, is active and the password matches; else ``None``.

        Takes as long for an unknown name as for a wrong password. Re-hashes a password whose
        hash used older parameters.
        """
        with self._session("read user") as session:
            row = session.scalar(select(UserRow).where(UserRow.username == username))
            stored = row.password_hash if row is not None else None
        if not verify_password(stored, password) or row is None or not row.active:
            return None
        with self._session(f"record login of {username}") as session:
            fresh = self._row(session, username)
            fresh.last_login_at = self._clock()
            if needs_rehash(fresh.password_hash):
                fresh.password_hash = hash_password(password)
            return _user(fresh)

    # -- sessions ----------------------------------------------------------------------------

    def create_session(self, user: User, client: str | None = None) -> tuple[str, SessionInfo]:
        """Start a session; returns the cookie value (given out once) and the session."""
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        row = SessionRow(
            id=_digest(secret),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.lifetime,
            client=(client or "")[:255] or None,
        )
        with self._session("start a session") as session:
            session.add(row)
            # Expired sessions of anyone are swept here rather than by a timer.
            session.execute(delete(SessionRow).where(SessionRow.expires_at < now))
        return secret, SessionInfo(row.id, user.id, row.csrf_token, now, row.expires_at)

    def session(self, cookie: str, *, touch: bool = True) -> tuple[User, SessionInfo] | None:
        """The user and session behind a cookie value, or ``None`` if unknown or expired.

        ``touch=False`` looks without counting as a request (the session's last-seen time is
        left alone): an open WebSocket checking its credential again every few seconds
        (:func:`~safewatch.api.ws.keep_access`) would otherwise keep a session from ever idling
        out, a browser left on the Live page holding it for the whole ``lifetime``. A session
        that has idled out is gone either way.
        """
        if not cookie or len(cookie) > 128:
            return None
        now = self._clock()
        with self._session("read a session") as session:
            row = session.get(SessionRow, _digest(cookie))
            if row is None:
                return None
            if row.expires_at <= now or now - row.last_seen_at > self.idle:
                session.delete(row)
                return None
            user = session.get(UserRow, row.user_id)
            if user is None or not user.active:
                session.delete(row)
                return None
            if touch and now - row.last_seen_at > _TOUCH_EVERY:
                row.last_seen_at = now
            info = SessionInfo(row.id, row.user_id, row.csrf_token, row.created_at, row.expires_at)
            return _user(user), info

    def end_session(self, session_id: str) -> None:
        """Log a session out (nothing happens for an unknown one)."""
        with self._session("end a session") as session:
            session.execute(delete(SessionRow).where(SessionRow.id == session_id))
        self.changes += 1

    # -- API tokens --------------------------------------------------------------------------

    def create_token(
        self, username: str, name: str, *, expires_at: float | None = None
    ) -> IssuedToken:
        """Issue an API token for ``username``; the secret is in the result only.

        Raises:
            NotFound: No such user.
            ValueError: Empty or overlong name, or one with non-printable characters.
        """
        name = check_token_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        with self._session(f"issue a token for {username}") as session:
            user = self._row(session, username)
            row = ApiTokenRow(
                user_id=user.id,
                name=name,
                token_hash=_digest(token),
                prefix=token[:12],
                created_at=now,
                expires_at=expires_at,
            )
            session.add(row)
            session.flush()
            return IssuedToken(token, _token_info(row, username))

    def token(self, token: str) -> tuple[User, TokenInfo] | None:
        """The user and token behind a bearer token, or ``None`` if unknown, expired or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        now = self._clock()
        with self._session("check a token") as session:
            row = session.scalar(
                select(ApiTokenRow).where(ApiTokenRow.token_hash == _digest(token))
            )
            if row is None or row.revoked_at is not None:
                return None
            if row.expires_at is not None and row.expires_at <= now:
                return None
            user = session.get(UserRow, row.user_id)
            if user is None or not user.active:
                return None
            if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
                row.last_used_at = now
            return _user(user), _token_info(row, user.username)

    def tokens(self, username: str | None = None) -> list[TokenInfo]:
        """Tokens (of one user, or everyone's), newest first."""
        query = select(ApiTokenRow, UserRow.username).join(
            UserRow, UserRow.id == ApiTokenRow.user_id
        )
        if username is not None:
            query = query.where(UserRow.username == username)
        with self._session("list tokens") as session:
            rows = session.execute(query.order_by(ApiTokenRow.id.desc())).all()
            return [_token_info(row, name) for row, name in rows]

    def revoke_token(self, token_id: int, *, username: str | None = None) -> TokenInfo:
        """Revoke a token (only ``username``'s, when given).

        Raises:
            NotFound: No such token (of that user).
        """
        with self._session("revoke a token") as session:
            found = session.execute(
                select(ApiTokenRow, UserRow.username)
                .join(UserRow, UserRow.id == ApiTokenRow.user_id)
                .where(ApiTokenRow.id == token_id)
            ).first()
            if found is None or (username is not None and found[1] != username):
                raise NotFound("token", str(token_id))
            row, owner = found
            if row.revoked_at is None:
                row.revoked_at = self._clock()
            info = _token_info(row, owner)
        self.changes += 1
        return info

    # -- audit log ---------------------------------------------------------------------------

    def audit(
        self,
        action: str,
        *,
        actor: str | None,
        subject: str | None = None,
        detail: Mapping[str, Any] | None = None,
        client: str | None = None,
    ) -> None:
        """Append one record to the audit log.

        Raises:
            StorageError: It cannot be written (callers that reveal evidence must then refuse).
        """
        row = AuditLogRow(
            at=self._clock(),
            actor=actor,
            action=action,
            subject=subject,
            detail=json.dumps(dict(detail or {}), sort_keys=True, default=str),
            client=(client or "")[:255] or None,
        )
        with self._session(f"write the audit log ({action})") as session:
            session.add(row)

    def audit_records(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        subject: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[AuditRecord], int]:
        """Audit records, newest first, and how many match in all."""
        clauses = []
        if actor is not None:
            clauses.append(AuditLogRow.actor == actor)
        if action is not None:
            clauses.append(AuditLogRow.action == action)
        if subject is not None:
            clauses.append(AuditLogRow.subject == subject)
        query = select(AuditLogRow).where(*clauses).order_by(AuditLogRow.id.desc())
        with self._session("read the audit log") as session:
            rows = session.scalars(query.limit(limit).offset(offset)).all()
            total = session.scalar(select(func.count()).select_from(AuditLogRow).where(*clauses))
            return [
                AuditRecord(
                    r.id, r.at, r.actor, r.action, r.subject, json.loads(r.detail), r.client
                )
                for r in rows
            ], int(total or 0)
