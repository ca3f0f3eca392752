"""Users and API tokens: admins manage users; everyone manages their own tokens.

Changing a password, role or active flag ends the user's sessions. An admin cannot demote,
disable or delete themself (a site must never lose its last way in by a slip of the mouse).
Everything here is written to the audit log.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from safewatch.api.auth.passwords import check_password_policy
from safewatch.api.auth.store import TOKEN_EXPIRES_MAX, TokenInfo, User, check_token_name
from safewatch.api.deps import Admin, DashboardDep, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["users"], responses=ERROR_RESPONSES)

UserName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
Role = Annotated[str, Field(pattern="^(viewer|operator|admin)$")]
Password = Annotated[str, AfterValidator(check_password_policy)]
"""A new password, checked by the store's own policy (a blank one of 10+ spaces passes
``min_length``; refused here, it is a 422 with the policy's message, not a 500 from the store)."""


class UserOut(BaseModel):
    """A user (never the password hash)."""

    username: str
    role: str
    active: bool
    created_at: float
    last_login_at: float | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        """From the store's user."""
        return cls(
            username=user.username,
            role=user.role,
            active=user.active,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class UserIn(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    password: Password = Field(min_length=10, max_length=1024)
    role: Role = "viewer"


class UserPatch(BaseModel):
    """Changes to a user; absent fields stay."""

    model_config = ConfigDict(extra="forbid")
    password: Password | None = Field(None, min_length=10, max_length=1024)
    role: Role | None = None
    active: bool | None = None


class TokenOut(BaseModel):
    """An API token as listed (never the secret)."""

    id: int
    username: str
    name: str
    prefix: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    @classmethod
    def of(cls, token: TokenInfo) -> TokenOut:
        """From the store's token."""
        return cls(
            id=token.id,
            username=token.username,
            name=token.name,
            prefix=token.prefix,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class TokenIn(BaseModel):
    """A new token: what uses it, and optionally when it expires."""

    model_config = ConfigDict(extra="forbid")
    # The store's own check too: str.strip() also removes \x1c-\x1f, which \S accepts.
    name: Annotated[str, AfterValidator(check_token_name)] = Field(
        min_length=1, max_length=64, pattern=r"\S"
    )
    expires_at: float | None = Field(None, ge=0, le=TOKEN_EXPIRES_MAX)


class IssuedTokenOut(TokenOut):
    """A new token with its secret, shown this once."""

    token: str


class AuditRecordOut(BaseModel):
    """One audit-log record."""

    id: int
    at: float
    actor: str | None
    action: str
    subject: str | None
    detail: dict[str, object]
    client: str | None


class AuditPageOut(BaseModel):
    """A page of the audit log, newest first."""

    items: list[AuditRecordOut]
    total: int


@router.get("/users", response_model=list[UserOut], summary="List users")
async def list_users(_user: Admin, dashboard: DashboardDep) -> list[UserOut]:
    """Every user."""
    return [UserOut.of(u) for u in await anyio.to_thread.run_sync(dashboard.auth.users)]


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a user")
async def add_user(
    body: UserIn, request: Request, admin: Admin, dashboard: DashboardDep
) -> UserOut:
    """Create a user (409 if the name is taken)."""

    def run() -> User:
        user = dashboard.auth.add_user(body.username, body.password, body.role)
        dashboard.auth.audit(
            "user.add",
            actor=admin.username,
            subject=user.username,
            detail={"role": user.role},
            client=client_of(request),
        )
        return user

    return UserOut.of(await anyio.to_thread.run_sync(run))


@router.patch("/users/{username}", response_model=UserOut, summary="Change a user")
async def update_user(
    username: UserName, body: UserPatch, request: Request, admin: Admin, dashboard: DashboardDep
) -> UserOut:
    """Change a password, role or active flag; the user's sessions end."""
    if username == admin.username and (
        (body.role is not None and body.role != "admin") or body.active is False
    ):
        raise ApiError(409, "conflict", "you cannot demote or disable yourself")

    def run() -> User:
        user = dashboard.auth.update_user(
            username, password=body.password, role=body.role, active=body.active
        )
        changed = sorted(k for k, v in body.model_dump().items() if v is not None)
        dashboard.auth.audit(
            "user.update",
            actor=admin.username,
            subject=username,
            detail={"changed": changed, "role": user.role, "active": user.active},
            client=client_of(request),
        )
        return user

    return UserOut.of(await anyio.to_thread.run_sync(run))


@router.delete("/users/{username}", status_code=204, summary="Remove a user")
async def delete_user(
    username: UserName, request: Request, admin: Admin, dashboard: DashboardDep
) -> None:
    """Remove a user with their sessions and tokens."""
    if username == admin.username:
        raise ApiError(409, "conflict", "you cannot remove yourself")

    def run() -> None:
        dashboard.auth.delete_user(username)
        dashboard.auth.audit(
            "user.delete", actor=admin.username, subject=username, client=client_of(request)
        )

    await anyio.to_thread.run_sync(run)


@router.get("/tokens", response_model=list[TokenOut], summary="My API tokens")
async def list_tokens(user: Viewer, dashboard: DashboardDep) -> list[TokenOut]:
    """The caller's tokens (admins: everyone's)."""
    owner = None if user.can("admin") else user.username
    return [TokenOut.of(t) for t in await anyio.to_thread.run_sync(dashboard.auth.tokens, owner)]


@router.post("/tokens", response_model=IssuedTokenOut, status_code=201, summary="New API token")
async def create_token(
    body: TokenIn, request: Request, user: Viewer, dashboard: DashboardDep
) -> IssuedTokenOut:
    """Issue a token for the caller; the secret is in this answer only."""

    def run() -> IssuedTokenOut:
        issued = dashboard.auth.create_token(user.username, body.name, expires_at=body.expires_at)
        dashboard.auth.audit(
            "token.create",
            actor=user.username,
            subject=issued.info.prefix,
            detail={"name": body.name},
            client=client_of(request),
        )
        return IssuedTokenOut(**TokenOut.of(issued.info).model_dump(), token=issued.token)

    return await anyio.to_thread.run_sync(run)


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke an API token")
async def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**62)],
    request: Request,
    user: Viewer,
    dashboard: DashboardDep,
) -> TokenOut:
    """Revoke one of the caller's tokens (admins: anyone's)."""
    owner = None if user.can("admin") else user.username

    def run() -> TokenInfo:
        info = dashboard.auth.revoke_token(token_id, username=owner)
        dashboard.auth.audit(
            "token.revoke", actor=user.username, subject=info.prefix, client=client_of(request)
        )
        return info

    return TokenOut.of(await anyio.to_thread.run_sync(run))


@router.get("/audit-log", response_model=AuditPageOut, summary="Security audit log")
async def audit_log(
    _user: Admin,
    dashboard: DashboardDep,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    subject: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditPageOut:
    """Who logged in, looked at evidence, revealed originals, changed users, rules or zones."""
    records, total = await anyio.to_thread.run_sync(
        lambda: dashboard.auth.audit_records(
            actor=actor, action=action, subject=subject, limit=limit, offset=offset
        )
    )
    return AuditPageOut(
        items=[
            AuditRecordOut(
                id=r.id,
                at=r.at,
                actor=r.actor,
                action=r.action,
                subject=r.subject,
                detail=r.detail,
                client=r.client,
            )
            for r in records
        ],
        total=total,
    )
