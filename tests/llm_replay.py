"""A local OpenAI-compatible chat-completions server that replays recorded responses.

No language model is reachable from CI, and a real one would not answer the same way twice, so
the drafting tests talk to this server over real HTTP on 127.0.0.1 instead: the client, its
timeouts and its error handling run exactly as against OpenRouter or Ollama. Each *scenario* is a
YAML file under ``tests/data/llm_replay/`` holding the responses to give, in order (status,
headers, body, an optional delay); the request's ``model`` picks the scenario, so one server
serves several. Every request is recorded (path, headers, JSON body) for the tests to inspect,
e.g. that a repair round sends the validation errors back.

A model name with no scenario gets the 404 an OpenAI-style server gives for an unknown model.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

__all__ = ["RECORDINGS", "Recorded", "ReplayServer", "chat_completion", "load_scenario", "replay"]

RECORDINGS = Path(__file__).parent / "data" / "llm_replay"


@dataclass(frozen=True)
class Recorded:
    """One response to give: HTTP status, headers, body (JSON or text) and a delay."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


def chat_completion(content: str, *, model: str = "replay", finish: str = "stop") -> dict[str, Any]:
    """A chat.completion body in the OpenAI shape, as vLLM, Ollama and OpenRouter return it."""
    return {
        "id": "chatcmpl-replay",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
    }


def load_scenario(name: str) -> list[Recorded]:
    """The responses of ``tests/data/llm_replay/NAME.yaml``.

    An entry with ``content:`` is a 200 chat completion with that assistant text; otherwise it
    gives ``status``, ``body``, ``headers`` and ``delay`` as written.
    """
    entries = yaml.safe_load((RECORDINGS / f"{name}.yaml").read_text(encoding="utf-8"))
    out = []
    for entry in entries:
        if "content" in entry:
            body = chat_completion(entry["content"], finish=entry.get("finish_reason", "stop"))
            out.append(Recorded(200, body, delay=float(entry.get("delay", 0.0))))
        else:
            out.append(
                Recorded(
                    int(entry.get("status", 200)),
                    entry.get("body"),
                    dict(entry.get("headers") or {}),
                    float(entry.get("delay", 0.0)),
                )
            )
    return out


@dataclass
class _Request:
    path: str
    headers: dict[str, str]
    body: Any


class ReplayServer:
    """Serves ``POST /v1/chat/completions`` from scenarios; see the module docstring.

    Args:
        scenarios: Model name -> responses, given in order; the last one repeats when a scenario
            runs out (so a "never valid" model keeps answering the same way).
        api_key: When set, requests without ``Authorization: Bearer <key>`` get 401.
    """

    def __init__(
        self, scenarios: Mapping[str, Sequence[Recorded]], *, api_key: str | None = None
    ) -> None:
        self.scenarios = {name: list(responses) for name, responses in scenarios.items()}
        self.api_key = api_key
        self.requests: list[_Request] = []
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def bodies(self, model: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies received (for one model, when given)."""
        return [
            r.body
            for r in self.requests
            if isinstance(r.body, dict) and (model is None or r.body.get("model") == model)
        ]

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, model: str) -> Recorded | None:
        with self._lock:
            responses = self.scenarios.get(model)
            if not responses:
                return None
            index = self._served.get(model, 0)
            self._served[model] = index + 1
            return responses[min(index, len(responses) - 1)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _send(self, status: int, body: Any, headers: Mapping[str, str] = {}) -> None:
                raw = body if isinstance(body, str) else json.dumps(body)
                data = raw.encode("utf-8")
                self.send_response(status)
                content_type = "text/plain" if isinstance(body, str) else "application/json"
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with server._lock:
                    server.requests.append(_Request(self.path, dict(self.headers.items()), body))
                if self.path != "/v1/chat/completions":
                    self._send(404, {"detail": "Not Found"})
                    return
                if server.api_key is not None:
                    sent = self.headers.get("Authorization", "")
                    if sent != f"Bearer {server.api_key}":
                        given = sent.removeprefix("Bearer ")
                        self._send(
                            401,
                            {
                                "error": {
                                    "message": f"Incorrect API key provided: {given}",
                                    "type": "invalid_request_error",
                                    "code": "invalid_api_key",
                                }
                            },
                        )
                        return
                model = body.get("model", "") if isinstance(body, dict) else ""
                recorded = server._next(model)
                if recorded is None:
                    self._send(
                        404,
                        {
                            "error": {
                                "message": f"The model `{model}` does not exist",
                                "type": "invalid_request_error",
                                "code": "model_not_found",
                            }
                        },
                    )
                    return
                if recorded.delay:
                    time.sleep(recorded.delay)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    # the client may have given up already (timeout tests)
                    self._send(recorded.status, recorded.body, recorded.headers)

        return Handler


@contextmanager
def replay(
    scenarios: Mapping[str, Sequence[Recorded]], *, api_key: str | None = None
) -> Iterator[ReplayServer]:
    """A started :class:`ReplayServer`, stopped on exit."""
    server = ReplayServer(scenarios, api_key=api_key).start()
    try:
        yield server
    finally:
        server.stop()
