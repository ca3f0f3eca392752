"""Keep camera credentials out of logs and error messages.

Camera URLs routinely carry ``user:password@`` or ``?token=`` secrets. Every message that names a
source goes through :func:`redact_url` (or :func:`redact_text` for text from FFmpeg, which quotes
the URL it failed on), so a log shipped to a ticket never leaks a password.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["SECRET_QUERY_KEYS", "redact_text", "redact_url"]

SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "token", "auth", "key"})
"""Query parameter names (case-insensitive) whose values are secrets."""

_MASK = "***"


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
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_userinfo_by_hand(url)
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{_MASK}:{_MASK}@{host}" if ":" in userinfo else f"{_MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode(
                [(k, _MASK if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs],
                safe="*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def _secrets(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    found: set[str] = set()
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.add(userinfo)
        found.update(piece for piece in userinfo.split(":", 1) if piece)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in SECRET_QUERY_KEYS and value:
            found.add(value)
            found.add(quote(value, safe=""))
    found |= {unquote(s) for s in found}
    # Very short fragments ("a", "1") would mangle unrelated text; they are not worth hiding.
    return {s for s in found if len(s) >= 3}


def _redact_userinfo_by_hand(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    host_and_path = rest.split("@", 1)[1]
    return f"{scheme}://{_MASK}:{_MASK}@{host_and_path}"
