"""Find the draft in a model's reply.

Models wrap YAML in a fenced block and add a sentence or two; reasoning models put a
``<think>...</think>`` section first; some answer JSON (which is YAML too). The rule is simple and
stated in the prompt: exactly one ``yaml`` (or ``yml`` / ``json``) block. A reply that breaks it
is a format error sent back in a repair round, never guessed at: choosing one of two blocks would
be choosing which of the model's ideas becomes a rule.
"""

from __future__ import annotations

import re

__all__ = ["ReplyFormatError", "extract_draft"]

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_FENCE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.S | re.M
)
_DRAFT_LANGS = frozenset({"yaml", "yml", "json"})


class ReplyFormatError(ValueError):
    """The reply does not hold exactly one draft block; the message says what to fix."""


def extract_draft(reply: str) -> str:
    """The text of the reply's one YAML / JSON block.

    A reply with no fence at all is taken whole when it starts like a rule file (``version:``,
    ``rules:``, ``zones:``, ``lines:`` or ``{``); small local models often answer bare YAML.

    Raises:
        ReplyFormatError: No block, or several draft blocks.
    """
    text = _THINK.sub("", reply).strip()
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
    if not blocks and re.match(r"^(?:version|rules|zones|lines)\s*:|^\{", text):
        return text + "\n"
    if not text:
        raise ReplyFormatError("the reply is empty; give the draft in one ```yaml block")
    raise ReplyFormatError("the reply has no ```yaml block; give the draft in one ```yaml block")
