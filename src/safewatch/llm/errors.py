"""What can go wrong when drafting rules with a language model, as user-facing errors.

Two families. :class:`LLMError` is about the endpoint (unreachable, slow, wrong key, unknown
model, a reply that is not a chat completion): the operator fixes the ``llm`` block or the
server. :class:`DraftError` is about the draft itself (refused by the guard, never valid, stale at
save time): the operator rewords the request or writes the rule by hand. Both are
:class:`~safewatch.errors.SafewatchError`, so the CLI prints them as one line and the API maps them
to one JSON shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from safewatch.errors import SafewatchError

__all__ = [
    "DraftError",
    "DraftRefused",
    "LLMAuthError",
    "LLMError",
    "LLMModelNotFound",
    "LLMNotConfigured",
    "LLMResponseError",
    "LLMTimeout",
    "LLMUnreachable",
    "StaleDraft",
]


class LLMError(SafewatchError):
    """The language-model endpoint could not give a usable reply."""


class LLMNotConfigured(LLMError):
    """The site file has no ``llm`` block (and none was given on the command line)."""


class LLMUnreachable(LLMError):
    """Nothing answers at the endpoint's address (server down, wrong host or port)."""


class LLMTimeout(LLMError):
    """The endpoint did not answer within the configured timeout."""


class LLMAuthError(LLMError):
    """The endpoint refused the API key (HTTP 401 or 403)."""


class LLMModelNotFound(LLMError):
    """The endpoint does not know the configured model (HTTP 404 naming the model)."""


class LLMResponseError(LLMError):
    """The endpoint answered with an error, or with something that is not a chat completion."""


class DraftError(SafewatchError):
    """A draft cannot become a rule change."""


class DraftRefused(DraftError):
    """The draft does something a rule draft may not do (see :mod:`safewatch.llm.guard`).

    Attributes:
        reasons: Each thing refused, one sentence each.
    """

    def __init__(self, reasons: Sequence[str]) -> None:
        if not reasons:
            raise ValueError("DraftRefused needs a reason")
        self.reasons = tuple(reasons)
        text = "; ".join(self.reasons)
        super().__init__(f"draft refused, nothing was saved: {text}")


class StaleDraft(DraftError):
    """The target rule file changed between the draft and its confirmation."""
