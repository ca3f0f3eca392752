"""A small client for OpenAI-compatible chat-completions endpoints.

OpenRouter, Ollama, vLLM and llama.cpp's server all speak ``POST {base_url}/chat/completions``
with the same request and reply shape, so one client serves them all and no vendor SDK is needed.
It does exactly what drafting needs: one non-streaming completion, a hard timeout, retries with
exponential backoff on the answers that mean "try again" (HTTP 429 and 5xx, honouring
``Retry-After``), and an error per failure an operator can act on: nothing listening, too slow,
wrong key, unknown model, wrong URL. The API key is sent as a bearer token and never appears in
an error message, even when a server echoes it back: every message passes through the project's
secret mask (:func:`~safewatch.config.secrets.redact_secrets`) and a mask of this client's key in
every form it may be quoted in (``repr``, JSON, percent-encoded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from safewatch.config.llm import LLMConfig
from safewatch.config.secrets import SecretRegistry, redact_secrets
from safewatch.llm.errors import (
    LLMAuthError,
    LLMError,
    LLMModelNotFound,
    LLMResponseError,
    LLMTimeout,
    LLMUnreachable,
)

__all__ = ["ChatClient", "ChatMessage", "ChatReply", "OpenAIChatClient", "chat_url"]

Role = Literal["system", "user", "assistant"]

_MAX_BACKOFF_S = 8.0
_MAX_RETRY_AFTER_S = 30.0
_MAX_ERROR_TEXT = 300


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatReply:
    """The first choice of a completion.

    Attributes:
        content: The assistant's text.
        model: The model that answered, as the endpoint names it.
        finish_reason: ``stop``, ``length`` (cut off at ``max_tokens``) or what the server says.
        prompt_tokens: Tokens read, when the server reports usage.
        completion_tokens: Tokens written, when the server reports usage.
    """

    content: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatClient(Protocol):
    """Anything that completes a conversation (the HTTP client, or a test's fake)."""

    @property
    def model(self) -> str:
        """The model asked for."""
        ...

    def complete(self, messages: Sequence[ChatMessage]) -> ChatReply:
        """The assistant's next message."""
        ...


def chat_url(base_url: str) -> str:
    """``https://host/v1`` -> ``https://host/v1/chat/completions`` (a full URL is kept)."""
    url = base_url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


class OpenAIChatClient:
    """Chat completions over HTTP, with timeouts, retries and clear errors.

    Args:
        base_url: Endpoint base, e.g. ``http://localhost:11434/v1``.
        model: Model name as the endpoint knows it.
        api_key: Bearer key, or ``None`` for servers without authentication.
        timeout: Seconds for one request (connect, write and read each; the connect phase is
            capped at 10 s so a dead host fails fast).
        max_retries: Further attempts after HTTP 429 / 5xx.
        temperature: Sampling temperature.
        max_tokens: Longest reply.
        sleep: Waits between retries (tests pass a recorder).
        transport: An httpx transport, for tests that need one.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        temperature: float = 0.0,
        max_tokens: int = 2000,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = chat_url(base_url)
        self._model = model
        self._api_key = api_key
        self._key_mask = SecretRegistry()
        self._key_mask.add([api_key] if api_key else [])
        self._timeout = timeout
        self._max_retries = max_retries
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": "safewatch-rule-drafter"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        try:
            self._http = httpx.Client(
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                transport=transport,
                follow_redirects=False,
            )
        except UnicodeError:
            # httpx encodes headers as ASCII here; its message would quote part of the key.
            raise LLMAuthError(
                "the API key holds a character an HTTP header cannot carry (non-ASCII); check "
                "llm.api_key"
            ) from None

    @classmethod
    def from_config(cls, config: LLMConfig, **kwargs: Any) -> OpenAIChatClient:
        """A client for the site file's ``llm`` block."""
        key = config.api_key.get_secret_value() if config.api_key is not None else None
        return cls(
            config.base_url,
            config.model,
            api_key=key or None,
            timeout=config.timeout,
            max_retries=config.max_retries,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            **kwargs,
        )

    @property
    def model(self) -> str:
        """The model asked for."""
        return self._model

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> OpenAIChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(self, messages: Sequence[ChatMessage]) -> ChatReply:
        """Send the conversation; return the first choice.

        Raises:
            LLMUnreachable: Nothing answered at the address.
            LLMTimeout: No reply within the timeout.
            LLMAuthError: HTTP 401 / 403.
            LLMModelNotFound: HTTP 404 naming the model.
            LLMResponseError: Any other HTTP error (after retries for 429 / 5xx), a redirect
                (not followed; the message names where to), or a body that is not a chat
                completion.
        """
        body = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
            "stream": False,
        }
        try:
            return self._complete(body)
        except LLMError as exc:
            # One mask for every message: an httpx error quotes a header as bytes' repr (a key
            # ending in a newline read ``b'Bearer sk-...\\n'``), which the key as written does
            # not match.
            raise type(exc)(self._redact(str(exc))) from None

    def _complete(self, body: dict[str, Any]) -> ChatReply:
        attempt = 0
        while True:
            response = self._post(body)
            if _retryable(response.status_code) and attempt < self._max_retries:
                self._sleep(self._backoff(response, attempt))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise self._http_error(response, attempt + 1)
            if 300 <= response.status_code < 400:
                raise self._redirect_error(response)
            return self._parse(response)

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            return self._http.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            phase = "connect to" if isinstance(exc, httpx.ConnectTimeout) else "get a reply from"
            raise LLMTimeout(
                f"could not {phase} the LLM endpoint {self.url} within {self._timeout:g} s "
                "(raise llm.timeout for a slow local model)"
            ) from None
        except httpx.ConnectError as exc:
            raise LLMUnreachable(
                f"cannot reach the LLM endpoint {self.url}: {exc} "
                "(is the server running? check llm.base_url)"
            ) from None
        except (httpx.InvalidURL, UnicodeError) as exc:
            # Not HTTPErrors: a URL httpx cannot parse, or a host name IDNA cannot encode
            # (``http://a..b/v1``) surfaced as a traceback (CLI) or a 500 (API).
            raise LLMUnreachable(
                f"cannot send to the LLM endpoint {self.url}: not a valid address "
                f"({type(exc).__name__}: {exc}); check llm.base_url"
            ) from None
        except httpx.HTTPError as exc:
            raise LLMUnreachable(
                f"request to the LLM endpoint {self.url} failed: {type(exc).__name__}: {exc}"
            ) from None

    @staticmethod
    def _backoff(response: httpx.Response, attempt: int) -> float:
        retry_after = response.headers.get("Retry-After")
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), _MAX_RETRY_AFTER_S)
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        return float(min(0.5 * 2**attempt, _MAX_BACKOFF_S))

    def _redact(self, text: str) -> str:
        """``text`` with the site's secrets and this client's key (as written, and as ``repr``,
        JSON and URLs quote it) masked; a key shorter than the registry's minimum is still
        masked as written."""
        text = self._key_mask.redact(redact_secrets(text))
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _server_message(self, response: httpx.Response) -> str:
        """The server's own words about an error (OpenAI, Ollama, vLLM and FastAPI shapes)."""
        message: Any = None
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            error = data.get("error", data.get("detail"))
            message = error.get("message") if isinstance(error, dict) else error
        if not message:
            message = response.text.strip() or response.reason_phrase
        text = " ".join(str(message).split())
        if len(text) > _MAX_ERROR_TEXT:
            text = text[: _MAX_ERROR_TEXT - 3] + "..."
        return self._redact(text)

    def _http_error(self, response: httpx.Response, attempts: int) -> LLMError:
        status = response.status_code
        said = self._server_message(response)
        where = f"the LLM endpoint {self.url}"
        if status in (401, 403):
            return LLMAuthError(
                f"{where} refused the API key (HTTP {status}: {said}); check llm.api_key"
            )
        if status == 404:
            if "model" in said.lower():
                return LLMModelNotFound(
                    f"model {self._model!r} not found at {where} (HTTP 404: {said}); check "
                    "llm.model (Ollama: `ollama pull` it first)"
                )
            return LLMResponseError(
                f"no chat-completions endpoint at {self.url} (HTTP 404: {said}); llm.base_url "
                "usually ends in /v1"
            )
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return LLMResponseError(f"{where} answered HTTP {status}{tries}: {said}")

    def _redirect_error(self, response: httpx.Response) -> LLMError:
        """A 3xx (http -> https, a moved path). Redirects are not followed, so the API key goes
        only to the address the site file names; before, the 3xx fell through to parsing and
        read as "answered with something that is not JSON (text/html)"."""
        status = response.status_code
        location = response.headers.get("Location")
        if not location:
            return LLMResponseError(
                f"the LLM endpoint {self.url} answered HTTP {status} (a redirect) with no "
                "Location; check llm.base_url"
            )
        target = str(response.url.join(location))
        base = target.removesuffix("/chat/completions")
        return LLMResponseError(
            f"the LLM endpoint {self.url} redirected to {target} (HTTP {status}); "
            f"set llm.base_url to {base} (redirects are not followed, so the API "
            "key is never sent elsewhere)"
        )

    def _parse(self, response: httpx.Response) -> ChatReply:
        try:
            data = response.json()
        except ValueError:
            raise LLMResponseError(
                f"the LLM endpoint {self.url} answered with something that is not JSON "
                f"({response.headers.get('content-type', 'no content type')})"
            ) from None
        if isinstance(data, dict) and "error" in data and not data.get("choices"):
            raise LLMResponseError(
                f"the LLM endpoint {self.url} answered with an error: "
                f"{self._server_message(response)}"
            )
        try:
            choice = data["choices"][0]
            content = _text(choice["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise LLMResponseError(
                f"the LLM endpoint {self.url} answered with JSON that is not a chat completion "
                "(no choices[0].message.content)"
            ) from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return ChatReply(
            content=content,
            model=str(data.get("model") or self._model),
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
        )


def _retryable(status: int) -> bool:
    """HTTP 429 and every 5xx, as the docs say: the list 500/502/503/504 gave up at once on
    the 5xx answers proxies and providers add (Cloudflare's 520-524, 529 "overloaded")."""
    return status == 429 or 500 <= status < 600


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise TypeError("content is neither text nor a list of parts")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
