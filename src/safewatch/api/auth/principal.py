"""Roles and the authenticated principal of a request.

Three roles, each including the one below: a **viewer** watches (live view, incidents, evidence
stills and clips, analytics); an **operator** also acts on incidents (acknowledge, resolve, false
positive, notes), runs audits and exports reports; an **admin** also edits rules and zones, manages
users and reveals unblurred originals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ROLES", "AuthMethod", "Principal", "Role", "role_at_least"]

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
"""From least to most privileged."""

AuthMethod = Literal["session", "token"]


def role_at_least(role: str, needed: Role) -> bool:
    """Whether ``role`` includes the rights of ``needed``."""
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request, and how they proved it.

    Attributes:
        user_id: The user's row id.
        username: The user's name (what the timeline and audit log record).
        role: The user's role.
        method: ``session`` (browser cookie: CSRF applies) or ``token`` (bearer token).
        csrf_token: The session's CSRF token (``None`` for tokens).
        session_id: The session's key (hash of the cookie), to log out.
    """

    user_id: int
    username: str
    role: Role
    method: AuthMethod
    csrf_token: str | None = None
    session_id: str | None = None

    def can(self, needed: Role) -> bool:
        """Whether this principal has at least the ``needed`` role."""
        return role_at_least(self.role, needed)
