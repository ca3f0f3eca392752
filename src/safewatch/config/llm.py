"""The site file's ``llm`` block: the language model that helps write rules.

The model is an authoring aid only: nothing at run time talks to it, and what it writes becomes a
rule only after the real rule validation and an operator's confirmation
(:mod:`safewatch.llm`). Any OpenAI-compatible chat-completions server works (OpenRouter, Ollama,
vLLM, llama.cpp's server), so the block names a URL and a model rather than a vendor. The key
belongs in the environment (``api_key: ${OPENROUTER_API_KEY}``) and is never shown in messages.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from safewatch.errors import ConfigError

__all__ = ["LLMConfig", "check_base_url", "with_overrides"]

_HOST = re.compile(r"^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[?[0-9A-Fa-f:.]+\]?)$")
"""A host name as DNS spells it (IDN hosts are checked in their ``xn--`` form), or an IP."""


def check_base_url(url: str) -> str:
    """``url`` if an HTTP client can send to it: parsed as httpx parses it, with a host that
    DNS can look up and a port in 1-65535.

    A typo passed the block's pattern and failed only when a draft was asked for: httpx raised
    ``InvalidURL`` (``http://[::1/v1``) or the host's IDNA encoding raised ``UnicodeError``
    (``http://a..b/v1``), neither an error the CLI or the API expected (a traceback, a 500).

    Raises:
        ValueError: What is wrong with it.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    try:
        host = parsed.host.encode("idna").decode("ascii")
    except UnicodeError:
        host = ""  # an empty label (a..b, .a) or one over 63 characters
    if not host or not _HOST.match(host):
        raise ValueError(f"the URL's host name {parsed.host!r} is not valid")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ValueError(f"the URL's port {parsed.port} is out of range (1-65535)")
    return url


class LLMConfig(BaseModel):
    """An OpenAI-compatible chat-completions endpoint for ``safewatch rules draft``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        pattern=r"^https?://\S+$",
        description="Endpoint base URL, usually ending in /v1: https://openrouter.ai/api/v1, "
        "http://localhost:11434/v1 (Ollama), http://localhost:8000/v1 (vLLM), "
        "http://localhost:8080/v1 (llama.cpp server).",
    )
    model: str = Field(min_length=1, description="Model name as the endpoint knows it.")
    api_key: SecretStr | None = Field(
        None, description="Bearer key, if the endpoint needs one. Put it in ${ENV}."
    )
    timeout: float = Field(
        60.0, gt=0, le=600, description="Seconds to wait for one reply (local models are slow)."
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries after HTTP 429 or 5xx, with exponential backoff."
    )
    max_repairs: int = Field(
        2,
        ge=0,
        le=5,
        description="Rounds that send the validation errors back for a corrected draft.",
    )
    temperature: float = Field(
        0.0, ge=0, le=2, description="Sampling temperature; 0 gives the most repeatable drafts."
    )
    max_tokens: int = Field(2000, ge=64, le=32000, description="Longest reply, in tokens.")

    _base_url_parses = field_validator("base_url")(check_base_url)

    @field_validator("api_key")
    @classmethod
    def _header_safe_key(cls, value: SecretStr | None) -> SecretStr | None:
        """The key as an HTTP header can carry it: surrounding whitespace stripped, and any other
        whitespace, control or non-ASCII character refused (without quoting the key).

        A key read from a file (a Kubernetes secret, ``$(cat key.txt)``) often ends in a newline;
        sent as is, httpx refused the header with an error that quoted ``b'Bearer sk-...\\n'``, a
        form of the key no mask matched, so the CLI and the API's 502 showed it.
        """
        if value is None:
            return None
        key = value.get_secret_value().strip()
        bad = next((c for c in key if not c.isascii() or not c.isprintable() or c.isspace()), None)
        if bad is not None:
            what = "a non-ASCII" if not bad.isascii() else "a whitespace or control"
            raise ValueError(
                f"the API key holds {what} character (position {key.index(bad) + 1}); an HTTP "
                "header cannot carry it: check the key's value (a typo, or two keys pasted)"
            )
        return SecretStr(key)


def with_overrides(
    settings: LLMConfig | None, *, base_url: str | None = None, model: str | None = None
) -> LLMConfig | None:
    """The site's ``llm`` block with ``--base-url`` / ``--model`` given on the command line,
    validated as the block itself is (before, a block built from the options raised pydantic's
    raw ValidationError, and options over a block were copied in unchecked, so
    ``--base-url localhost:11434/v1`` reached the HTTP client).

    Returns:
        ``settings`` when no option is given; ``None`` when there is no block and the options
        do not name both an endpoint and a model.

    Raises:
        ConfigError: An option's value is invalid; the message names the option.
    """
    from safewatch.config.validation import ConfigErrors, validate_document
    from safewatch.config.yaml_lines import LocatedDocument

    given = {k: v for k, v in (("base_url", base_url), ("model", model)) if v is not None}
    if not given or (settings is None and len(given) < 2):
        return settings
    data: dict[str, Any] = {} if settings is None else dict(settings)
    try:
        return validate_document(LLMConfig, LocatedDocument("command line", data | given))
    except ConfigErrors as exc:
        raise ConfigErrors(
            [
                ConfigError(error.message, field="--" + (error.field or "").replace("_", "-"))
                for error in exc.errors
            ]
        ) from None
