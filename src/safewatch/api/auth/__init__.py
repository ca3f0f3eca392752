"""Who may use the dashboard and API: users, roles, sessions, API tokens, the audit log.

* :mod:`.passwords`: argon2id hashing.
* :mod:`.store`: :class:`AuthStore`, the tables behind it (users, sessions, tokens, audit log).
* :mod:`.ratelimit`: :class:`LoginLimiter`, failed-login throttling.
* :mod:`.deps`: the FastAPI dependencies that authenticate each request and enforce roles and CSRF.
"""

from safewatch.api.auth.passwords import hash_password, verify_password
from safewatch.api.auth.principal import ROLES, Principal, Role, role_at_least
from safewatch.api.auth.ratelimit import LoginLimiter
from safewatch.api.auth.store import (
    AuditRecord,
    AuthStore,
    IssuedToken,
    SessionInfo,
    TokenInfo,
    User,
    UserExists,
)

__all__ = [
    "ROLES",
    "AuditRecord",
    "AuthStore",
    "IssuedToken",
    "LoginLimiter",
    "Principal",
    "Role",
    "SessionInfo",
    "TokenInfo",
    "User",
    "UserExists",
    "hash_password",
    "role_at_least",
    "verify_password",
]
