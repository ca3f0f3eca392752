"""Every configured secret, masked by value wherever text leaves the process.

Redacting URLs by their shape (:func:`safewatch.ingest.redact.redact_url`) catches a password
where a URL is quoted whole. It cannot catch the same password quoted alone (an FFmpeg message, a
reason string, a config value echoed in an error), nor a ``${ENV}`` value that is not in a URL at
all (an S3 key, a webhook secret, an SMTP password). So the values themselves are collected here,
when the configuration is read, and masked wherever text leaves the process:

* every value a ``${VAR}`` reference expanded to, in any YAML file read
  (:func:`safewatch.config.loader.read_document`);
* every secret of the validated site: pydantic ``SecretStr`` fields, and the user info and secret
  query values of every URL-valued field (:func:`register_site_secrets`);

and :func:`redact_secrets` is the one mask applied at each edge: log records
(:class:`~safewatch.config.log_redaction.RedactingFilter`), API and ``/readyz`` bodies
(:class:`~safewatch.api.redaction.RedactResponses`), PDF reports. A secret is masked as written,
percent-encoded and -decoded, and escaped as JSON, HTML and ``repr`` quote it, whatever
characters it holds. Values shorter than
:data:`MIN_LENGTH` are not masked by value (they would mangle unrelated text); inside URLs they
are still masked by shape.

The registry is per process and only grows (a secret removed from the file may still sit in an
old log line's context); decode processes register their own camera's URL.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from pydantic import BaseModel, SecretStr

from safewatch.ingest.redact import redact_url, url_secrets, url_user

if TYPE_CHECKING:
    from safewatch.config.loader import LoadedSite

__all__ = [
    "MIN_LENGTH",
    "SECRETS",
    "SecretRegistry",
    "redact_json",
    "redact_secrets",
    "redact_urls_in",
    "register_loaded_site",
    "register_site_secrets",
]

MIN_LENGTH = 4
"""Shortest value masked by value."""

_MASK = "***"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_urls_in(text: str) -> str:
    """Replace every URL in ``text`` by its redacted form (user info and secret query values)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def _forms(value: str) -> set[str]:
    """``value`` as it may be quoted: as written, percent-encoded (two ways) and -decoded, and
    escaped for JSON (both ``ensure_ascii`` ways), HTML and ``repr``, and each of those escaped
    once more for JSON: an error quoting a secret's ``repr`` (httpx: ``Illegal header value
    b'Bearer sk-...\\n'``) reaches an API body JSON-escaped again, and the response mask's
    one-pass check of the body text (:mod:`safewatch.api.redaction`) must still see it."""
    forms = {value, quote(value, safe=""), quote(value), unquote(value)}
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms |= {html.escape(value), html.escape(value, quote=False), repr(value)[1:-1]}
    forms |= {json.dumps(form, ensure_ascii=False)[1:-1] for form in list(forms)}
    return forms


class SecretRegistry:
    """A set of secret values and one compiled pattern that masks them all.

    Thread-safe: adds (rare, at config load) swap the pattern; :meth:`redact` reads it without
    a lock.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._public: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        """Register secret values (and their encoded forms); short ones are ignored."""
        fresh = {form for value in values for form in _forms(value) if len(form) >= MIN_LENGTH}
        with self._lock:
            if fresh <= self._values:
                return
            self._values |= fresh
            self._compile()

    def exempt(self, values: Iterable[str]) -> None:
        """Never mask these by value (user names from URLs: ``admin`` is also a role)."""
        with self._lock:
            self._public |= set(values)
            self._compile()

    def _compile(self) -> None:
        masked = self._values - self._public
        # Longest first, so a password is masked whole before any shorter secret inside it.
        ordered = sorted(masked, key=lambda v: (-len(v), v))
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def add_url(self, url: str) -> None:
        """Register the secrets a URL carries: user info, password, secret query values.

        The user name alone is masked only inside URLs (by shape), not by value.
        """
        self.add(url_secrets(url, min_length=MIN_LENGTH, user=False))
        name = url_user(url)
        if name is not None:
            self.exempt(_forms(name))

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """``text`` with every registered value masked."""
        pattern = self._pattern
        return text if pattern is None else pattern.sub(_MASK, text)

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._values.clear()
            self._public.clear()
            self._pattern = None


SECRETS = SecretRegistry()
"""This process's secrets."""


def redact_secrets(text: str) -> str:
    """``text`` with URLs redacted by shape and every known secret masked by value."""
    return SECRETS.redact(redact_urls_in(text))


def redact_json(value: object) -> object:
    """A decoded JSON value with :func:`redact_secrets` applied to every string in it.

    Masking the serialised text instead would also hit keys, numbers and ``null`` (a password
    ``null1`` is no reason to break a document), and could cut an escape sequence in half.
    """
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {key: redact_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    return value


def register_loaded_site(site: LoadedSite, registry: SecretRegistry = SECRETS) -> None:
    """Register a loaded site's ``${VAR}`` values and its config's secrets.

    Called by :func:`~safewatch.config.loader.load_site`, and by every process that receives a
    site pickled instead of loading it (the API process), so its edges mask the same values.
    """
    registry.add(site.secrets)
    register_site_secrets(site.config, registry)


def register_site_secrets(config: BaseModel, registry: SecretRegistry = SECRETS) -> None:
    """Register the secrets of a validated config: ``SecretStr`` values and URL credentials."""
    for value in _strings(config):
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            registry.add([secret])
            if "://" in secret:  # a webhook URL: its token is also quoted without the rest
                registry.add_url(secret)
        elif "://" in value:
            registry.add_url(value)


def _strings(value: object) -> Iterable[str | SecretStr]:
    if isinstance(value, SecretStr | str):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _strings(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)
