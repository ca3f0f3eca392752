"""The chat-completions client against a real local HTTP server: requests, retries, errors."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from llm_replay import Recorded, chat_completion, replay
from llm_site import make_site
from safewatch.config.llm import LLMConfig, with_overrides
from safewatch.config.loader import load_site
from safewatch.errors import ConfigError
from safewatch.llm.client import ChatMessage, OpenAIChatClient, chat_url
from safewatch.llm.errors import (
    LLMAuthError,
    LLMModelNotFound,
    LLMResponseError,
    LLMTimeout,
    LLMUnreachable,
)

HELLO = [ChatMessage("system", "be brief"), ChatMessage("user", "hi")]


class Sleeps:
    """Records the waits between retries instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://h:1/v1", "http://h:1/v1/chat/completions"),
        ("http://h:1/v1/", "http://h:1/v1/chat/completions"),
        ("http://h:1/v1/chat/completions", "http://h:1/v1/chat/completions"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions"),
    ],
)
def test_chat_url(base: str, url: str) -> None:
    assert chat_url(base) == url


def test_sends_an_openai_request_and_reads_the_first_choice() -> None:
    with replay({"m": [Recorded(200, chat_completion("hello there", model="m-2024"))]}) as server:
        config = LLMConfig.model_validate(
            {"base_url": server.base_url, "model": "m", "api_key": "sk-test", "temperature": 0}
        )
        with OpenAIChatClient.from_config(config) as client:
            reply = client.complete(HELLO)
    assert reply.content == "hello there"
    assert reply.model == "m-2024"
    assert reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens) == (1000, 100)
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.body["model"] == "m"
    assert request.body["temperature"] == 0
    assert request.body["stream"] is False
    assert request.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


def test_no_authorization_header_without_a_key() -> None:
    with replay({"m": [Recorded(200, chat_completion("ok"))]}) as server:
        OpenAIChatClient(server.base_url, "m").complete(HELLO)
    assert "Authorization" not in server.requests[0].headers


def test_content_given_as_parts_is_joined() -> None:
    body = chat_completion("")
    body["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b"},
    ]
    with replay({"m": [Recorded(200, body)]}) as server:
        assert OpenAIChatClient(server.base_url, "m").complete(HELLO).content == "ab"


def test_a_500_then_success_is_retried_with_backoff() -> None:
    sleeps = Sleeps()
    responses = [
        Recorded(500, {"error": {"message": "overloaded"}}),
        Recorded(502, "bad gateway"),
        Recorded(200, chat_completion("third time")),
    ]
    with replay({"m": responses}) as server:
        client = OpenAIChatClient(server.base_url, "m", max_retries=2, sleep=sleeps)
        assert client.complete(HELLO).content == "third time"
    assert len(server.requests) == 3
    assert sleeps.calls == [0.5, 1.0]


def test_429_honours_retry_after() -> None:
    sleeps = Sleeps()
    responses = [
        Recorded(429, {"error": {"message": "rate limited"}}, {"Retry-After": "3"}),
        Recorded(200, chat_completion("ok")),
    ]
    with replay({"m": responses}) as server:
        client = OpenAIChatClient(server.base_url, "m", sleep=sleeps)
        assert client.complete(HELLO).content == "ok"
    assert sleeps.calls == [3.0]


def test_gives_up_after_max_retries_with_the_servers_words() -> None:
    sleeps = Sleeps()
    with replay({"m": [Recorded(503, {"error": {"message": "no capacity"}})]}) as server:
        client = OpenAIChatClient(server.base_url, "m", max_retries=2, sleep=sleeps)
        with pytest.raises(LLMResponseError, match=r"HTTP 503 after 3 attempts: no capacity"):
            client.complete(HELLO)
    assert len(server.requests) == 3


def test_401_is_an_auth_error_that_never_shows_the_key() -> None:
    with replay({"m": [Recorded(200, chat_completion("ok"))]}, api_key="right") as server:
        client = OpenAIChatClient(server.base_url, "m", api_key="sk-wrong-secret")
        with pytest.raises(LLMAuthError, match=r"refused the API key \(HTTP 401") as caught:
            client.complete(HELLO)
    # The server echoes the key it was given; the message must not.
    assert "sk-wrong-secret" not in str(caught.value)
    assert "***" in str(caught.value)
    assert len(server.requests) == 1  # auth errors are not retried


def test_unknown_model_is_a_model_not_found_error() -> None:
    with replay({"m": [Recorded(200, chat_completion("ok"))]}) as server:
        client = OpenAIChatClient(server.base_url, "llama-9000")
        with pytest.raises(LLMModelNotFound, match=r"model 'llama-9000' not found .* llm.model"):
            client.complete(HELLO)


def test_wrong_base_url_says_where_the_endpoint_should_be() -> None:
    with replay({"m": [Recorded(200, chat_completion("ok"))]}) as server:
        client = OpenAIChatClient(server.base_url.removesuffix("/v1"), "m")
        with pytest.raises(LLMResponseError, match=r"no chat-completions endpoint .* /v1"):
            client.complete(HELLO)


def test_timeout_is_reported_within_the_limit() -> None:
    with replay({"m": [Recorded(200, chat_completion("late"), delay=10.0)]}) as server:
        client = OpenAIChatClient(server.base_url, "m", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(LLMTimeout, match=r"within 0.3 s .* llm.timeout"):
            client.complete(HELLO)
        assert time.monotonic() - started < 5.0  # the reply would come after 10 s


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = OpenAIChatClient(f"http://127.0.0.1:{port}/v1", "m", timeout=2)
    with pytest.raises(LLMUnreachable, match=r"cannot reach .*refused \(is the server running"):
        client.complete(HELLO)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (Recorded(200, "<html>proxy login</html>"), r"not JSON"),
        (Recorded(200, {"object": "list", "data": []}), r"not a chat completion"),
        (Recorded(200, {"error": {"message": "context too long"}}), r"context too long"),
        (Recorded(400, {"error": {"message": "bad max_tokens"}}), r"HTTP 400: bad max_tokens"),
    ],
)
def test_replies_that_are_not_completions(response: Recorded, message: str) -> None:
    with replay({"m": [response]}) as server:
        client = OpenAIChatClient(server.base_url, "m", max_retries=0)
        with pytest.raises(LLMResponseError, match=message):
            client.complete(HELLO)


@pytest.mark.parametrize(
    ("location", "base"),
    [
        ("https://llm.example/v1/chat/completions", "https://llm.example/v1"),
        ("/api/v1/chat/completions", "{server}/api/v1"),
    ],
)
def test_a_redirect_says_where_to_and_is_not_followed(location: str, base: str) -> None:
    """An http -> https redirect read as "answered with something that is not JSON"."""
    moved = Recorded(301, "<html>Moved</html>", headers={"Location": location})
    with replay({"m": [moved, Recorded(200, chat_completion("ok"))]}) as server:
        client = OpenAIChatClient(server.base_url, "m", api_key="sk-test", max_retries=0)
        root = server.base_url.removesuffix("/v1")
        expected = base.format(server=root)
        with pytest.raises(LLMResponseError) as caught:
            client.complete(HELLO)
    assert str(caught.value) == (
        f"the LLM endpoint {client.url} redirected to {expected}/chat/completions (HTTP 301); "
        f"set llm.base_url to {expected} (redirects are not followed, so the API key is never "
        "sent elsewhere)"
    )
    assert len(server.requests) == 1


def test_a_key_read_with_its_trailing_newline_is_sent_without_it(tmp_path: Path) -> None:
    """A key from a file (a Kubernetes secret) ends in a newline; httpx refused the header with
    an error quoting ``b'Bearer sk-...\\n'``, which no mask matched."""
    with replay({"m": [Recorded(200, chat_completion("ok"))]}) as server:
        site, _ = make_site(
            tmp_path, llm=f"base_url: {server.base_url}\nmodel: m\napi_key: ${{LLM_KEY}}"
        )
        config = load_site(site, environ={"LLM_KEY": "sk-or-v1-abcdef0123456789\n"}).config.llm
        assert config is not None
        with OpenAIChatClient.from_config(config) as client:
            assert client.complete(HELLO).content == "ok"
    assert server.requests[0].headers["Authorization"] == "Bearer sk-or-v1-abcdef0123456789"


@pytest.mark.parametrize("key", ["sk-abcdef 0123456789", "sk-abcdef\t0123456789", "sk-abcdéf0123"])
def test_a_key_no_header_can_carry_is_a_config_error_that_does_not_show_it(
    tmp_path: Path, key: str
) -> None:
    site, _ = make_site(
        tmp_path, llm="base_url: http://127.0.0.1:9/v1\nmodel: m\napi_key: ${LLM_KEY}"
    )
    with pytest.raises(ConfigError, match=r"llm.api_key: the API key holds a") as caught:
        load_site(site, environ={"LLM_KEY": key})
    assert "sk-abc" not in caught.value.format()


def test_a_key_quoted_as_bytes_by_httpx_is_masked() -> None:
    """A client built with a key (not from a site file) still never shows it, in any form."""
    with replay({"m": [Recorded(200, chat_completion("ok"))]}) as server:
        client = OpenAIChatClient(server.base_url, "m", api_key="sk-secret-0123456789\n")
        with pytest.raises(LLMUnreachable, match=r"header value b'Bearer \*\*\*'") as caught:
            client.complete(HELLO)
    assert "sk-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1/v1", r"not a valid URL \(Invalid port"),
        ("http://a..b/v1", r"host name 'a..b' is not valid"),
        ("http://ex%ample.com/v1", r"host name 'ex%ample.com' is not valid"),
        ("http://localhost:99999/v1", r"port 99999 is out of range"),
    ],
)
def test_a_base_url_no_client_can_send_to_is_a_config_error(url: str, message: str) -> None:
    """These passed the block's pattern and failed at the first draft: a traceback from httpx
    (InvalidURL) or the IDNA codec (UnicodeError) in the CLI, a 500 in the API."""
    with pytest.raises(ConfigError, match=message) as caught:
        with_overrides(None, base_url=url, model="m")
    assert caught.value.field == "--base-url"


@pytest.mark.parametrize("url", ["http://[::1/v1", "http://a..b/v1"])
def test_an_address_httpx_cannot_send_to_is_an_llm_error(url: str) -> None:
    """A client built without the config's checks still fails with an LLMError, never with
    httpx's InvalidURL or a UnicodeError."""
    with (
        OpenAIChatClient(url, "m", timeout=2) as client,
        pytest.raises(LLMUnreachable, match=r"not a valid address .* check llm.base_url"),
    ):
        client.complete(HELLO)


def test_a_non_ascii_key_is_an_llm_error_that_does_not_show_it() -> None:
    with pytest.raises(LLMAuthError, match=r"non-ASCII\); check llm.api_key") as caught:
        OpenAIChatClient("http://127.0.0.1:9/v1", "m", api_key="sk-sécret-0123")
    assert "sécret" not in str(caught.value)


def test_every_5xx_is_retried() -> None:
    """Only 500, 502, 503 and 504 were retried, though the docs say "429 or 5xx": a proxy's 520
    or a provider's 529 "overloaded" failed the draft at once."""
    sleeps = Sleeps()
    responses = [
        Recorded(520, "origin error"),
        Recorded(529, {"error": {"message": "overloaded"}}),
        Recorded(200, chat_completion("third time")),
    ]
    with replay({"m": responses}) as server:
        client = OpenAIChatClient(server.base_url, "m", max_retries=2, sleep=sleeps)
        assert client.complete(HELLO).content == "third time"
    assert len(server.requests) == 3
