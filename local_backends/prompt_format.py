"""Turn chat messages into a plain completion prompt for base models.

A base GGUF (no chat template) only continues text. Framing the conversation as
Question/Answer pairs and stopping at the next "Question:" makes it produce one
answer. Instruct models don't come here: they use their own chat template.
"""

from __future__ import annotations

from typing import Any

from policies.common.message_content import message_text
from policies.common.settings import CompletionPromptFormat


def build_completion_prompt(messages: list[dict[str, Any]], fmt: CompletionPromptFormat) -> str:
    system = "\n".join(message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    parts: list[str] = [fmt.system_prefix.format(system=system)] if system.strip() else []
    for m in messages:
        role, text = m.get("role"), message_text(m.get("content")).strip()
        if role == "user" or role == "tool":
            parts.append(fmt.user_turn.format(content=text))
        elif role == "assistant":
            parts.append(fmt.assistant_turn.format(content=text))
    parts.append(fmt.answer_prefix)
    return "".join(parts)
