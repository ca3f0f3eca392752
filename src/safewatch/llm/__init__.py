"""Natural-language rule builder: an authoring aid, never a runtime dependency.

A safety officer's request goes to an OpenAI-compatible chat model (:mod:`.client`) with the rule
schema and the site's facts (:mod:`.prompt`); the reply is validated with the real rule loader and
repaired up to twice (:mod:`.drafting`), refused if it reaches beyond adding rules
(:mod:`.guard`), and written only when an operator confirms, atomically and with an audit record
(:mod:`.saving`) into the site's audit log.
"""

from safewatch.llm.client import ChatClient, ChatMessage, ChatReply, OpenAIChatClient
from safewatch.llm.drafting import DraftResult, RuleDrafter, check_draft_text
from safewatch.llm.errors import (
    DraftError,
    DraftRefused,
    LLMAuthError,
    LLMError,
    LLMModelNotFound,
    LLMNotConfigured,
    LLMResponseError,
    LLMTimeout,
    LLMUnreachable,
    StaleDraft,
)
from safewatch.llm.guard import Change
from safewatch.llm.prompt import DraftTurn
from safewatch.llm.saving import SAVED_ACTION, AuditWriter, SavedDraft, save_draft
from safewatch.llm.workspace import RuleWorkspace

__all__ = [
    "SAVED_ACTION",
    "AuditWriter",
    "Change",
    "ChatClient",
    "ChatMessage",
    "ChatReply",
    "DraftError",
    "DraftRefused",
    "DraftResult",
    "DraftTurn",
    "LLMAuthError",
    "LLMError",
    "LLMModelNotFound",
    "LLMNotConfigured",
    "LLMResponseError",
    "LLMTimeout",
    "LLMUnreachable",
    "OpenAIChatClient",
    "RuleDrafter",
    "RuleWorkspace",
    "SavedDraft",
    "StaleDraft",
    "check_draft_text",
    "save_draft",
]
