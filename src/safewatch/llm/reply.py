"""Find the draft in a model's reply.

Models wrap YAML in a fenced block and add a sentence or two; reasoning models put a
``<think>...</think>`` section first; some answer JSON (which is YAML too). The rule is simple and
stated in the prompt: exactly one ``yaml`` (or ``yml`` / ``json``) block. A reply that breaks it
is a format error sent back in a repair round, never guessed at: choosing one of two blocks would
be choosing which of the model's ideas becomes a rule.

The model's words around the block are what it assumed ("the press line is not calibrated, so
3 m is about 150 px"); :func:`reply_notes` keeps them for the operator, who must see them.
"""

from __future__ import annotations

import re

__all__ = ["ReplyFormatError", "extract_draft", "reply_notes", "without_thinking"]

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_FENCE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.S | re.M
)
_DRAFT_LANGS = frozenset({"yaml", "yml", "json"})
_BARE_DRAFT = re.compile(r"^(?:version|rules|zones|lines)\s*:|^\{")
_MAX_NOTES = 1000


class ReplyFormatError(ValueError):
    """The reply does not hold exactly one draft block; the message says what to fix."""


def without_thinking(reply: str) -> str:
    """The reply without its ``<think>...</think>`` sections (an unclosed one runs to the end)."""
    return _THINK.sub("", reply).strip()


def extract_draft(reply: str) -> str:
    """The text of the reply's one YAML / JSON block.

    A reply with no fence at all is taken whole when it starts like a rule file (``version:``,
    ``rules:``, ``zones:``, ``lines:`` or ``{``); small local models often answer bare YAML.

    Raises:
        ReplyFormatError: No block, or several draft blocks.
    """
    text = without_thinking(reply)
    blocks = [(lang.lower(), body) for _, lang, body in _FENCE.findall(text)]
    drafts = [body for lang, body in blocks if lang in _DRAFT_LANGS]
    if not drafts:
        drafts = [body for lang, body in blocks if not lang]
    if len(drafts) == 1:
        return str(drafts[0])
    if len(drafts) > 1:
        raise ReplyFormatError(
            f"the reply has {len(drafts)} YAML blocks; give the whole draft in exactly one "
            "```yaml block"
        )
    if not blocks and _BARE_DRAFT.match(text):
        return text + "\n"
    if not text:
        raise ReplyFormatError("the reply is empty; give the draft in one ```yaml block")
    raise ReplyFormatError("the reply has no ```yaml block; give the draft in one ```yaml block")


def reply_notes(reply: str) -> str:
    """The reply's text outside its draft block(s) and ``<think>`` sections, on one line.

    What a model says it assumed is the only place a guess shows (a metre distance written as a
    pixel one on an uncalibrated camera); dropping it left the operator a plausible rule and no
    hint. Non-printable characters are removed (the text reaches terminals), and it is cut at
    1000 characters. A reply that is bare YAML has no notes.
    """
    text = without_thinking(reply)
    if not _FENCE.search(text) and _BARE_DRAFT.match(text):
        return ""

    def drop_draft(match: re.Match[str]) -> str:
        lang = match.group(2).lower()
        return " " if not lang or lang in _DRAFT_LANGS else match.group(0)

    words = " ".join(_FENCE.sub(drop_draft, text).split())
    notes = "".join(c for c in words if c.isprintable())
    return notes if len(notes) <= _MAX_NOTES else notes[: _MAX_NOTES - 3] + "..."
