"""``safewatch users tokens|revoke|token``: API tokens from the command line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from cli_support import invoke
from safewatch.api.auth.store import AuthStore
from safewatch.config.loader import load_site
from safewatch.errors import NotFound
from safewatch.incidents.site_storage import open_site_storage
from safewatch.storage.auth_tables import ApiTokenRow

SITE = """\
version: 1
models:
  coco: {path: model.onnx}
cameras:
  yard: {source: clip.mp4, models: [coco]}
"""
PASSWORD = "a long enough password"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    return path


@pytest.fixture
def store(site: Path) -> Iterator[AuthStore]:
    storage = open_site_storage(load_site(site))
    try:
        auth = AuthStore(storage.engine)
        auth.add_user("ann", PASSWORD, "viewer")
        yield auth
    finally:
        storage.close()


def test_a_users_tokens_are_listed_and_one_is_revoked(site: Path, store: AuthStore) -> None:
    """A password change ends sessions, not API tokens (unchanged); the command line had no
    way to see a user's tokens or revoke one (only the dashboard's DELETE /api/v1/tokens/ID)."""
    kept = store.create_token("ann", "prometheus")
    leaked = store.create_token("ann", "laptop script", expires_at=4_102_444_800.0)
    store.update_user("ann", password="another long password")
    assert store.token(leaked.token) is not None  # a password change keeps tokens

    code, output = invoke("users", "tokens", "ann", "-c", str(site))
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "LAST", "USED"]
    assert lines[1].split()[:4] == [str(leaked.info.id), "laptop", "script", leaked.info.prefix]
    assert "2100-01-01 00:00 UTC" in lines[1] and lines[1].endswith("UTC")  # used just now
    assert lines[2].split()[:3] == [str(kept.info.id), "prometheus", kept.info.prefix]
    assert lines[2].split()[-2:] == ["never", "never"]  # expires never, never used
    assert kept.token not in output and leaked.token not in output

    code, output = invoke("users", "revoke", str(leaked.info.id), "-c", str(site))
    assert code == 0, output
    assert f"revoked token {leaked.info.id} 'laptop script' of ann" in output
    assert store.token(leaked.token) is None
    assert store.token(kept.token) is not None
    code, output = invoke("users", "tokens", "ann", "-c", str(site))
    assert "(revoked " in output.splitlines()[1]
    assert "token.revoke" in [r.action for r in store.audit_records(limit=5)[0]]


def test_token_names_are_shown_as_they_are_never_as_markup_or_escapes(
    site: Path, store: AuthStore
) -> None:
    """Any viewer names their tokens through the API, and the names were printed as Rich markup:
    ``[/]x`` was a MarkupError (after ``revoke`` had committed), ``[red]x`` lost its text, and an
    escape sequence reached the admin's terminal."""
    names = {"[/]scraper": "[/]scraper", "[red]x": "[red]x", "\x1b[2Jgone": "\\x1b[2Jgone"}
    issued = [store.create_token("ann", f"token {n}") for n in range(len(names))]
    storage = open_site_storage(load_site(site))
    try:  # rows written before names were checked
        with Session(storage.engine) as session, session.begin():
            for token, name in zip(issued, names, strict=True):
                session.execute(
                    update(ApiTokenRow).where(ApiTokenRow.id == token.info.id).values(name=name)
                )
    finally:
        storage.close()

    code, output = invoke("users", "tokens", "ann", "-c", str(site))
    assert code == 0, output
    assert "\x1b" not in output
    for shown in names.values():
        assert shown in output
    for token, shown in zip(issued, names.values(), strict=True):
        code, output = invoke("users", "revoke", str(token.info.id), "-c", str(site))
        assert code == 0, output
        assert f"revoked token {token.info.id} '{shown}' of ann" in output
        assert "\x1b" not in output


def test_a_token_name_with_control_characters_is_refused(site: Path, store: AuthStore) -> None:
    code, output = invoke("users", "token", "ann", "--name", "ci\x1b[2J", "-c", str(site))
    assert code == 2
    assert "non-printable" in " ".join(output.split())
    assert store.tokens("ann") == []


def test_unknown_users_and_tokens_are_errors(site: Path, store: AuthStore) -> None:
    with pytest.raises(NotFound):
        invoke("users", "tokens", "bob", "-c", str(site))
    with pytest.raises(NotFound):
        invoke("users", "revoke", "99", "-c", str(site))
    code, output = invoke("users", "tokens", "ann", "-c", str(site))
    assert (code, output.strip()) == (0, "ann has no API tokens")


@pytest.mark.parametrize("days", ["0", "-1", "nan", "inf"])
def test_a_token_lifetime_must_be_positive(site: Path, store: AuthStore, days: str) -> None:
    """``--days 0`` silently meant "never expires" and ``--days -1`` issued a token already
    expired."""
    code, output = invoke("users", "token", "ann", "--days", days, "-c", str(site))
    assert code == 2
    assert "must be more than 0" in " ".join(output.split())
    assert store.tokens("ann") == []


def test_a_token_lifetime_is_capped_where_the_api_caps_it(site: Path, store: AuthStore) -> None:
    """``--days 3000000`` issued a token expiring in the year 10240, and ``users tokens`` failed
    with "year 10240 is out of range" from then on, hiding the ID needed to revoke it."""
    code, output = invoke("users", "token", "ann", "--days", "3000000", "-c", str(site))
    assert code == 2
    assert "must be at most" in " ".join(output.split())
    assert store.tokens("ann") == []
    code, output = invoke("users", "token", "ann", "--days", "1000000", "-c", str(site))
    assert code == 0, output
    # a row from before the cap is listed, not an error
    store.create_token("ann", "far", expires_at=3e14)
    code, output = invoke("users", "tokens", "ann", "-c", str(site))
    assert code == 0, output
    assert "after 9999" in output


def test_a_token_lasts_the_days_asked_or_never_without_days(site: Path, store: AuthStore) -> None:
    before = time.time()
    code, output = invoke(
        "users", "token", "ann", "--days", "0.5", "--name", "day", "-c", str(site)
    )
    assert code == 0, output
    code, output = invoke("users", "token", "ann", "--name", "forever", "-c", str(site))
    assert code == 0, output
    expiry = {t.name: t.expires_at for t in store.tokens("ann")}
    assert expiry["forever"] is None
    assert expiry["day"] is not None
    assert before + 43_200 <= expiry["day"] <= time.time() + 43_200


def test_without_a_terminal_passwd_advises_passwd_with_the_site_file(
    site: Path, store: AuthStore
) -> None:
    """`users passwd` without a terminal advised `users add NAME --password-stdin -c SITE`:
    pasted, that adds a user (and SITE is no file)."""
    wide = {"COLUMNS": "1000"}  # the usage error's panel does not wrap the site file's path
    code, output = invoke("users", "passwd", "ann", "-c", str(site), env=wide)  # no terminal
    message = " ".join(output.replace("│", " ").split())
    assert code == 2 and "no terminal to ask for the password" in message
    assert f"users passwd ann --password-stdin -c {site}" in message
    assert "users add" not in message
    code, output = invoke("users", "add", "bob", "--role", "admin", "-c", str(site), env=wide)
    message = " ".join(output.replace("│", " ").split())
    assert code == 2 and f"users add bob --role admin --password-stdin -c {site}" in message
