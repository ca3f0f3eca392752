"""``safewatch users``: dashboard users and API tokens, in the site's database.

``users add NAME --role operator`` asks for the password twice (or reads one line from standard
input with ``--password-stdin``, for scripts); passwords are stored as argon2id hashes and never
printed. ``users token NAME --name prometheus`` prints a new API token once (only its hash is
kept); ``users tokens NAME`` lists a user's tokens and ``users revoke ID`` revokes one (a password
change ends the user's sessions, not their tokens). The first admin of a site is made here; later
ones can be added in the dashboard.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.cli.app import app, command, err, out

if TYPE_CHECKING:
    from safewatch.api.auth.store import AuthStore

__all__ = ["users_app"]

users_app = typer.Typer(help="Dashboard users and API tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Site file.")]


@contextmanager
def _store(config: Path, *, read_only: bool = False) -> Iterator[AuthStore]:
    """The site's users; ``read_only`` for the commands that only list.

    Read-only as ``verify`` opens it: a mistyped SQLite path said "no users yet" after creating
    an empty database (and its folder) there; now it is "database ... does not exist".
    """
    from safewatch.api.auth.store import AuthStore
    from safewatch.config.loader import load_site
    from safewatch.incidents.site_storage import open_site_storage
    from safewatch.storage import create_engine_for, ensure_schema

    site = load_site(config)
    if not read_only:
        storage = open_site_storage(site)
        try:
            yield AuthStore(storage.engine)
        finally:
            storage.close()
        return
    engine = create_engine_for(site.config.storage.database, site.base_dir, read_only=True)
    try:
        ensure_schema(engine, auto_upgrade=False, site_file=site.path)  # a reader never migrates
        yield AuthStore(engine)
    finally:
        engine.dispose()


def _password(stdin: bool, again: str, config: Path) -> str:
    """The new password: from standard input, or asked twice on the terminal.

    Args:
        stdin: ``--password-stdin`` was given.
        again: This command's words after ``safewatch`` (``users passwd ana``), for the advice
            to run it again with ``--password-stdin``: the advice named ``users add NAME``
            whatever the command, which pasted into `users passwd` added a user instead.
        config: The site file given, also for the advice.
    """
    if stdin:
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise typer.BadParameter("no password on standard input")
        return line
    if not sys.stdin.isatty():
        # Without a terminal the prompt would echo the password or abort ("Can not control echo").
        raise typer.BadParameter(
            "no terminal to ask for the password: pipe it with --password-stdin, e.g. "
            f"printf '%s\\n' \"$PASSWORD\" | {command()} {again} --password-stdin "
            f"-c {shlex.quote(str(config))}"
        )
    first: str = typer.prompt("Password", hide_input=True)
    second: str = typer.prompt("Repeat password", hide_input=True)
    if first != second:
        raise typer.BadParameter("the passwords differ")
    return first


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        # Past the year 9999: a token issued by `users token --days` before it was capped
        # (TOKEN_EXPIRES_MAX); failing here hid the ID needed to revoke it.
        return "after 9999"


def _shown(name: str) -> str:
    """``name`` with its non-printable characters escaped (``\\x1b``), for a terminal.

    Token names are set by any viewer through the API, and rows written before names were
    checked (:func:`~safewatch.api.auth.store.check_token_name`) may hold escape sequences.
    Print them with ``markup=False`` too: ``[/]x`` was a Rich markup error (after a revoke was
    already committed) and ``[red]x`` lost its text.
    """
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in name)


def _user_error(error: ValueError) -> typer.BadParameter:
    return typer.BadParameter(str(error))


@users_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -).")],
    config: ConfigOption,
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add a user (asks for the password)."""
    again = f"users add {shlex.quote(username)} --role {shlex.quote(role)}"
    password = _password(password_stdin, again, config)
    with _store(config) as store:
        try:
            user = store.add_user(username, password, role)
        except ValueError as error:
            raise _user_error(error) from None
        store.audit("user.add", actor="cli", subject=user.username, detail={"role": user.role})
    out.print(f"added {user.username} ({user.role})", highlight=False)


@users_app.command("list")
def list_users(config: ConfigOption) -> None:
    """List users with their roles and last logins."""
    with _store(config, read_only=True) as store:
        users = store.users()
    if not users:
        err.print(
            f"no users yet: add one with `safewatch users add NAME --role admin -c {config}`",
            soft_wrap=True,
        )
        return
    for user in users:
        state = "" if user.active else "  (disabled)"
        out.print(
            f"{user.username:<24} {user.role:<9} last login {_when(user.last_login_at)}{state}",
            highlight=False,
        )


@users_app.command("passwd")
def passwd(
    username: Annotated[str, typer.Argument(help="User name.")],
    config: ConfigOption,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Set a user's password (their sessions end; their API tokens stay: `users tokens`)."""
    password = _password(password_stdin, f"users passwd {shlex.quote(username)}", config)
    with _store(config) as store:
        try:
            store.update_user(username, password=password)
        except ValueError as error:
            raise _user_error(error) from None
        store.audit("user.update", actor="cli", subject=username, detail={"changed": ["password"]})
    out.print(f"password of {username} changed; their sessions ended", highlight=False)
    err.print(
        f"their API tokens still work: list them with `safewatch users tokens {username} -c "
        f"{config}`, revoke one with `safewatch users revoke ID -c {config}`",
        soft_wrap=True,
    )


@users_app.command("role")
def set_role(
    username: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Argument(help="viewer, operator or admin.")],
    config: ConfigOption,
) -> None:
    """Change a user's role (their sessions end)."""
    with _store(config) as store:
        try:
            store.update_user(username, role=role)
        except ValueError as error:
            raise _user_error(error) from None
        store.audit("user.update", actor="cli", subject=username, detail={"role": role})
    out.print(f"{username} is now {role}", highlight=False)


@users_app.command("remove")
def remove(
    username: Annotated[str, typer.Argument(help="User name.")], config: ConfigOption
) -> None:
    """Remove a user with their sessions and tokens."""
    with _store(config) as store:
        store.delete_user(username)
        store.audit("user.delete", actor="cli", subject=username)
    out.print(f"removed {username}", highlight=False)


@users_app.command("token")
def token(
    username: Annotated[str, typer.Argument(help="Whose token.")],
    config: ConfigOption,
    name: Annotated[str, typer.Option(help="What uses it (prometheus, a script).")] = "cli",
    days: Annotated[
        float | None,
        typer.Option(help="Expires after this many days, more than 0 (left out: never)."),
    ] = None,
) -> None:
    """Issue an API token (printed once; send it as 'Authorization: Bearer TOKEN')."""
    if days is not None and not (days > 0 and math.isfinite(days)):
        # 0 meant "never expires" (falsy) and a negative number issued a token already
        # expired, both silently; leaving --days out is how to ask for a token without expiry.
        raise typer.BadParameter(
            f"must be more than 0, got {days:g} (leave --days out for a token that never expires)",
            param_hint="'--days'",
        )
    from safewatch.api.auth.store import TOKEN_EXPIRES_MAX

    now = time.time()
    expires = now + days * 86400 if days is not None else None
    if expires is not None and expires > TOKEN_EXPIRES_MAX:
        # The API's own limit: a later date cannot be shown (`users tokens` failed with "year
        # 10240 is out of range" after --days 3000000).
        raise typer.BadParameter(
            f"must be at most {math.floor((TOKEN_EXPIRES_MAX - now) / 86400)}, got {days:g} "
            f"(the latest expiry a token can have is {_when(TOKEN_EXPIRES_MAX)}; leave --days "
            "out for a token that never expires)",
            param_hint="'--days'",
        )
    with _store(config) as store:
        try:
            issued = store.create_token(username, name, expires_at=expires)
        except ValueError as error:
            raise _user_error(error) from None
        store.audit("token.create", actor="cli", subject=issued.info.prefix, detail={"name": name})
    out.print(issued.token, highlight=False, soft_wrap=True)
    err.print(
        f"token {issued.info.name!r} for {username}; it is not shown again",
        highlight=False,
        markup=False,
    )


@users_app.command("tokens")
def list_tokens(
    username: Annotated[str, typer.Argument(help="Whose tokens.")], config: ConfigOption
) -> None:
    """List a user's API tokens (id, name, created, expires, last use; never the secret)."""
    with _store(config, read_only=True) as store:
        store.user(username)  # NotFound for a user who does not exist, not an empty list
        tokens = store.tokens(username)
    if not tokens:
        err.print(f"{username} has no API tokens", highlight=False)
        return
    out.print(
        f"{'ID':>6}  {'NAME':<24} {'PREFIX':<12}  {'CREATED':<20}  {'EXPIRES':<20}  LAST USED",
        highlight=False,
        soft_wrap=True,
    )
    for token in tokens:
        state = ""
        if token.revoked_at is not None:
            state = f"  (revoked {_when(token.revoked_at)})"
        elif token.expires_at is not None and token.expires_at <= time.time():
            state = "  (expired)"
        out.print(
            f"{token.id:>6}  {_shown(token.name):<24} {token.prefix:<12}  "
            f"{_when(token.created_at):<20}  {_when(token.expires_at):<20}  "
            f"{_when(token.last_used_at)}{state}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@users_app.command("revoke")
def revoke(
    token_id: Annotated[int, typer.Argument(help="The token's ID (`users tokens NAME`).", min=1)],
    config: ConfigOption,
) -> None:
    """Revoke an API token (a running server refuses it within a second; the row stays, listed
    as revoked)."""
    with _store(config) as store:
        info = store.revoke_token(token_id)
        store.audit("token.revoke", actor="cli", subject=info.prefix, detail={"name": info.name})
    out.print(
        f"revoked token {info.id} '{_shown(info.name)}' of {info.username}",
        highlight=False,
        markup=False,
    )
