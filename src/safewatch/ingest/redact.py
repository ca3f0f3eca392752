"""Keep camera credentials out of logs and error messages.

Camera URLs routinely carry ``user:password@`` or ``?token=`` secrets. Every message that names a
source goes through :func:`redact_url` (or :func:`redact_text` for text from FFmpeg, which quotes
the URL it failed on), so a log shipped to a ticket never leaks a password.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

__all__ = ["SECRET_QUERY_KEYS", "redact_text", "redact_url", "url_secrets", "url_user"]

SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "token", "auth", "key"})
"""Query parameter names (case-insensitive) whose values are secrets; so is any name ending in
``password`` (libpq's ``sslpassword``, the pass phrase of a client key)."""


def _secret_key(key: str) -> bool:
    """Whether a query parameter named ``key`` holds a secret."""
    lowered = key.lower()
    return lowered in SECRET_QUERY_KEYS or lowered.endswith("password")


_MASK = "***"

# An "@" that ends the user info: followed by a host (name, IPv4 or [IPv6]) and an optional port,
# then the end of the authority. Passwords are often pasted unencoded (``${CAM_PASSWORD}`` in the
# site file), so ``/``, ``?``, ``#`` and ``@`` in them must not end the user info early, as they
# do for :func:`urllib.parse.urlsplit`; the *last* such "@" is taken, which masks too much rather
# than too little when a later part of the URL happens to hold an "@". The port is whatever
# stands there, digits or not: the URL of an error ("port could not be cast to integer") is the
# one most likely to be logged, and a stricter port left its password in the clear.
#
# The host may be empty (libpq's ``postgresql://user:pw@/db?host=/run/postgresql``, a unix socket;
# ``user:pw@:5433/db``) and an IPv6 literal may carry a zone id (``[fe80::1%25eth0]``): each left
# its password in the clear when the host was required.
_USERINFO_END = re.compile(
    r"@(?=(?:[A-Za-z0-9._~%-]*|\[[0-9A-Za-z:.%]+\])(?::[^/?#@\s]*)?(?:[/?#]|$))"
)


def _split_userinfo(url: str) -> tuple[str, str | None, str] | None:
    """``(scheme, userinfo or None, rest after the "@")`` of a ``scheme://`` URL, else ``None``."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        return None
    ends = list(_USERINFO_END.finditer(rest))
    if not ends:
        return scheme, None, rest
    at = ends[-1].start()
    return scheme, rest[:at], rest[at + 1 :]


def redact_url(url: str) -> str:
    """Return ``url`` with its user info and secret query values replaced by ``***``.

    ``rtsp://admin:hunter2@10.0.0.5/stream?token=abc&ch=1`` becomes
    ``rtsp://***:***@10.0.0.5/stream?token=***&ch=1``. A user without a password is masked too
    (``***@``), since user names are half a credential. Strings that are not URLs (file paths,
    ``/dev/video0``) come back unchanged.

    Args:
        url: Any source string from the site file.

    Returns:
        The same URL, safe to log.
    """
    split = _split_userinfo(url)
    if split is None:
        return url
    scheme, userinfo, rest = split
    if userinfo is not None:
        url = (
            f"{scheme}://{_MASK}:{_MASK}@{rest}"
            if ":" in userinfo
            else f"{scheme}://{_MASK}@{rest}"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not (parts.netloc or url.startswith(f"{parts.scheme}:///")):
        return url  # not a URL; ``scheme:///path?password=`` (a unix socket's) is one
    netloc = parts.netloc
    query, fragment = parts.query, parts.fragment
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_key(key) for key, _ in pairs):
            query = urlencode(
                [(k, _MASK if _secret_key(k) else v) for k, v in pairs],
                safe="*",
            )
            # A "#" pasted unencoded into a token starts a "fragment" that is the token's tail.
            fragment = _MASK if fragment else fragment
    if query == parts.query and fragment == parts.fragment:
        return url  # as written: ``sqlite:///db`` would come back as ``sqlite:/db``
    redacted = urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    if not netloc:  # urlunsplit drops the empty authority of ``scheme:///path``
        redacted = f"{parts.scheme}://{redacted[len(parts.scheme) + 1 :]}"
    return redacted


def redact_text(text: str, url: str) -> str:
    """Remove every trace of ``url``'s secrets from free text (an FFmpeg error, a log line).

    Replaces the URL itself with its redacted form, then any remaining occurrence of the password,
    the user info, or a secret query value, raw or percent-decoded.

    Args:
        text: Message that may quote the URL.
        url: The source URL whose secrets must not appear.

    Returns:
        ``text`` with the secrets masked.
    """
    text = text.replace(url, redact_url(url))
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def url_user(url: str) -> str | None:
    """The user name in ``url``'s user info, as written, or ``None``."""
    split = _split_userinfo(url)
    if split is None or split[1] is None:
        return None
    return split[1].split(":", 1)[0] or None


def url_secrets(url: str, *, min_length: int = 3, user: bool = True) -> set[str]:
    """The secrets ``url`` carries: user info, user, password, secret query values.

    Each as written and percent-decoded (and the query values percent-encoded), so text that
    quotes any form of them can be masked. Strings that are not URLs carry none.

    Args:
        url: A source or endpoint URL.
        min_length: Shorter pieces are left out: masking "a" or "1" would mangle unrelated text.
        user: Include the user name alone (not for masking by value everywhere: names like
            ``admin`` are also roles and words).
    """
    split = _split_userinfo(url)
    if split is None:
        return set()
    scheme, userinfo, rest = split
    found: set[str] = set()
    if userinfo is not None:
        found.add(userinfo)
        name, _, password = userinfo.partition(":")
        found.update(piece for piece in (name if user else "", password) if piece)
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError:
        return _lengthy(found, min_length)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _secret_key(key) and value:
            found.add(value)
            found.add(quote(value, safe=""))
            if parts.fragment:  # an unencoded "#" in the value (see redact_url)
                found.update({parts.fragment, f"{value}#{parts.fragment}"})
    for piece in parts.query.split("&"):  # as written: "+" and "%" not decoded
        key, _, value = piece.partition("=")
        if _secret_key(unquote_plus(key)) and value:
            found.add(value)
    return _lengthy(found, min_length)


def _lengthy(found: set[str], min_length: int) -> set[str]:
    """``found`` with its percent-decoded forms, less the pieces too short to mask."""
    found |= {unquote(s) for s in found}
    return {s for s in found if len(s) >= min_length}
