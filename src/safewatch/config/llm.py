"""The site file's ``llm`` block: the language model that helps write rules.

The model is an authoring aid only: nothing at run time talks to it, and what it writes becomes a
rule only after the real rule validation and an operator's confirmation
(:mod:`safewatch.llm`). Any OpenAI-compatible chat-completions server works (OpenRouter, Ollama,
vLLM, llama.cpp's server), so the block names a URL and a model rather than a vendor. The key
belongs in the environment (``api_key: ${OPENROUTER_API_KEY}``) and is never shown in messages.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["LLMConfig"]


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
